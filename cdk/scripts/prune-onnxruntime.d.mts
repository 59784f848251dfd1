/** Deletes every native build of onnxruntime-node but the one for `platform`/`arch`. */
export function pruneOnnxRuntime(
  nodeModules: string,
  platform: string,
  arch: string,
): { kept: string[]; removed: string[] };
