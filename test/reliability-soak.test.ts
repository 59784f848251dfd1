import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ChildServer, startChildServer } from './support/child-server.js';
import { makeTextDataset, tempDir, toJsonl } from './support/fixtures.js';
import { ADMIN_KEY } from './support/harness.js';
import { client } from './support/http.js';

// CI runs the full minute; GRAFT_SOAK_SECONDS shortens it on a laptop (at least 20 s, so that there is a
// warm-up and two windows to compare).
const SOAK_SECONDS = Math.max(20, Number(process.env.GRAFT_SOAK_SECONDS) || 60);
const CLIENTS = 8;
// Memory is flat when the floor of the RSS (its lowest sample: what is left after garbage collection, whose
// sawtooth swings the RSS by +-40 MB here) in the last third of the run after the warm-up is within this of the
// floor in the first third. The floor itself was seen to drift by up to 37 MB between the windows on a healthy
// run (allocator and retrained models coming and going), so the bound is 64 MB. The windows are ~30 s and
// ~18,000 requests apart: a leak of 4 KB per request, or of 6 MB per retrain, would show.
const RSS_GROWTH_TOLERANCE = { ratio: 0.25, bytes: 64 * 1024 * 1024 };
const WARM_UP_FRACTION = 0.25;

describe('soak: mixed predict, upload and job polling against a real server process', () => {
  let server: ChildServer;
  let api: ReturnType<typeof client>;

  beforeAll(async () => {
    const dataDir = await tempDir('graft-soak-');
    server = await startChildServer({ env: { GRAFT_DATA_DIR: dataDir, GRAFT_API_KEY: ADMIN_KEY } });
    api = client((p, init) => fetch(`${server.url}${p}`, init), ADMIN_KEY);
    await api.put('/v1/tasks/soak', { strategy: 'logistic' });
    const first = await api.post(
      '/v1/tasks/soak/datasets',
      toJsonl(makeTextDataset()),
      'application/x-ndjson',
    );
    expect((await api.waitForJob(first.body.jobId)).status).toBe('succeeded');
  });

  afterAll(async () => {
    await server?.stop();
  });

  it(
    `serves ${SOAK_SECONDS} s of mixed traffic with zero errors and flat memory`,
    async () => {
      // given
      const words = ['storm', 'goal', 'bank', 'snow', 'league', 'loan', 'fog', 'coach', 'market', 'rain'];
      const errors: string[] = [];
      const counts = { predict: 0, upload: 0, poll: 0 };
      const jobs: string[] = [];
      const samples: { at: number; rss: number }[] = [];
      const started = Date.now();
      const deadline = started + SOAK_SECONDS * 1000;
      let uploads = 0;
      let nextUploadAt = started;

      const check = (what: string, status: number, ok: number[], body: unknown) => {
        if (!ok.includes(status)) errors.push(`${what}: ${status} ${JSON.stringify(body).slice(0, 200)}`);
      };
      const sampler = setInterval(() => {
        samples.push({ at: Date.now() - started, rss: server.rss() });
      }, 250);

      // when CLIENTS clients loop until the deadline: mostly predictions, job polling, an upload every 3 s
      const loop = async (id: number) => {
        let i = 0;
        while (Date.now() < deadline) {
          i++;
          const roll = (id * 7919 + i * 104729) % 100;
          if (Date.now() >= nextUploadAt) {
            nextUploadAt = Date.now() + 3000;
            uploads++;
            const rows = makeTextDataset({ perLabel: 8, seed: 100 + uploads }).map((r) => ({
              ...r,
              text: `${r.text} upload ${uploads}`,
            }));
            const uploaded = await api.post('/v1/tasks/soak/datasets', toJsonl(rows), 'application/x-ndjson');
            check('upload', uploaded.status, [201], uploaded.body);
            if (uploaded.body.jobId) jobs.push(uploaded.body.jobId);
            counts.upload++;
          } else if (roll < 15) {
            const job = jobs.at(-1 - (i % 3));
            const polled = job ? await api.get(`/v1/jobs/${job}`) : await api.get('/v1/jobs?task=soak');
            check('poll', polled.status, [200], polled.body);
            counts.poll++;
          } else {
            const inputs = Array.from(
              { length: 1 + (i % 4) },
              (_, k) => `${words[(i + k + id) % 10]} news ${i}`,
            );
            const predicted = await api.post('/v1/tasks/soak/predict', { inputs });
            check('predict', predicted.status, [200], predicted.body);
            if (predicted.status === 200 && predicted.body.predictions.length !== inputs.length) {
              errors.push(
                `predict: ${predicted.body.predictions.length} predictions for ${inputs.length} inputs`,
              );
            }
            counts.predict++;
          }
        }
      };
      await Promise.all(Array.from({ length: CLIENTS }, (_, id) => loop(id)));
      clearInterval(sampler);

      // then no request failed, and every job queued by the uploads ends succeeded
      expect(errors.slice(0, 10)).toEqual([]);
      for (const job of jobs) {
        const ended = await api.waitForJob(job, 60_000);
        expect(ended.status, JSON.stringify(ended.error)).toBe('succeeded');
      }

      // and memory is flat after the warm-up
      const warm = samples.filter((s) => s.at >= SOAK_SECONDS * 1000 * WARM_UP_FRACTION);
      const third = Math.floor(warm.length / 3);
      const early = Math.min(...warm.slice(0, third).map((s) => s.rss));
      const late = Math.min(...warm.slice(-third).map((s) => s.rss));
      const allowed = Math.max(early * RSS_GROWTH_TOLERANCE.ratio, RSS_GROWTH_TOLERANCE.bytes);
      const mb = (b: number) => `${(b / 2 ** 20).toFixed(1)} MB`;
      const timeline = samples
        .filter((_, i) => i % 20 === 0)
        .map((s) => `${(s.at / 1000).toFixed(0)}s ${mb(s.rss)}`)
        .join(', ');
      const summary = `${counts.predict} predictions, ${counts.poll} polls, ${counts.upload} uploads in ${SOAK_SECONDS} s; RSS floor after warm-up ${mb(early)} -> ${mb(late)} (allowed +${mb(allowed)}), peak ${mb(server.peakRss())}; RSS: ${timeline}`;
      console.log(summary);
      expect(late - early, summary).toBeLessThanOrEqual(allowed);
      expect(counts.predict, summary).toBeGreaterThan(SOAK_SECONDS * 50);
    },
    (SOAK_SECONDS + 120) * 1000,
  );
});
