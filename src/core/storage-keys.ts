/**
 * The storage layout: every object key Graft reads or writes is built here. Callers pass names already checked
 * with `checkName`, so no user string becomes a key segment unchecked.
 */
export const storageKeys = {
  backbonesPrefix: () => 'backbones/',
  backboneManifest: (name: string) => `backbones/${name}/manifest.json`,
  backboneFile: (name: string, relative: string) => `backbones/${name}/${relative}`,
  task: (task: string) => `tasks/${task}/task.json`,
  tasksPrefix: () => 'tasks/',
  datasetsPrefix: (task: string) => `tasks/${task}/datasets/`,
  datasetData: (task: string, dataset: string) => `tasks/${task}/datasets/${dataset}/data.jsonl`,
  datasetManifest: (task: string, dataset: string) => `tasks/${task}/datasets/${dataset}/manifest.json`,
  incomingPrefix: (task: string) => `tasks/${task}/incoming/`,
  rejectedPrefix: (task: string) => `tasks/${task}/rejected/`,
  rejectedFile: (task: string, file: string) => `tasks/${task}/rejected/${file}`,
  rejectedRecord: (task: string, file: string) => `tasks/${task}/rejected/${file}.error.json`,
  modelsPrefix: (task: string) => `tasks/${task}/models/`,
  modelFile: (task: string, version: string) => `tasks/${task}/models/${version}/model.onnx`,
  modelCard: (task: string, version: string) => `tasks/${task}/models/${version}/card.json`,
  current: (task: string) => `tasks/${task}/current.json`,
  job: (jobId: string) => `jobs/${jobId}.json`,
  jobsPrefix: () => 'jobs/',
  embeddingsCache: (backboneSha: string, datasetSha: string) =>
    `cache/embeddings/${backboneSha}/${datasetSha}.f32`,
  apiKey: (keyId: string) => `auth/keys/${keyId}.json`,
  apiKeysPrefix: () => 'auth/keys/',
} as const;
