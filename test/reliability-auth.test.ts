import { beforeAll, describe, expect, it } from 'vitest';
import { makeTextDataset, toJsonl } from './support/fixtures.js';
import {
  ADMIN_KEY,
  createTestApp,
  fillPath,
  type Route,
  routesOf,
  type TestApp,
  trainTask,
} from './support/harness.js';
import { client, expectError } from './support/http.js';

// The only routes a key with scope `predict` may use; every other route, including any added later, must refuse
// it. Public routes are the ones the OpenAPI document marks `security: []`.
const PREDICT_ROUTES = new Set([
  'GET /v1/tasks',
  'GET /v1/tasks/:task',
  'POST /v1/tasks/:task/predict',
  'POST /v1/embeddings',
  // the backbones that /v1/embeddings can name
  'GET /v1/backbones',
  'GET /v1/backbones/:name',
]);

/** Every object key with its ETag: what an unauthorised request must leave as it found it. */
async function snapshot(ctx: TestApp) {
  const keys = await ctx.deps.store.list('');
  return Object.fromEntries(
    await Promise.all(keys.map(async (k) => [k, (await ctx.deps.store.get(k)).etag])),
  );
}

describe('auth on every route', () => {
  let ctx: TestApp;
  let routes: Route[];
  let predictKey: string;
  let adminKey: string;
  let revokedKey: string;
  let params: Record<string, string>;

  beforeAll(async () => {
    ctx = await createTestApp();
    const { jobId } = await trainTask(ctx, 'alpha');
    const create = async (scopes: string[]) => (await ctx.api.post('/v1/keys', { name: 'k', scopes })).body;
    predictKey = (await create(['predict'])).key;
    adminKey = (await create(['admin'])).key;
    const revoked = await create(['admin', 'predict']);
    revokedKey = revoked.key;
    expect((await ctx.api.del(`/v1/keys/${revoked.id}`)).status).toBe(200);
    params = { task: 'alpha', version: 'v1', id: jobId, name: 'hash-ngrams', token: 'x' };
    routes = routesOf(ctx.app);
  });

  /** A well-formed request for the route: only the credentials are wrong. */
  function send(route: Route, authorization?: string) {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (authorization !== undefined) headers.authorization = authorization;
    const body = ['GET', 'HEAD'].includes(route.method) ? undefined : JSON.stringify({ inputs: ['x'] });
    return ctx.app.request(fillPath(route.path, params), { method: route.method, headers, body });
  }

  const keyOf = (flavour: string): string => {
    switch (flavour) {
      case 'wrong secret':
        return `Bearer ${predictKey.slice(0, -4)}AAAA`;
      case 'unknown id':
        return `Bearer graft_zzzzzzzzzzzz_${'A'.repeat(43)}`;
      case 'admin key, one character off':
        return `Bearer ${ADMIN_KEY.slice(0, -1)}X`;
      case 'revoked':
        return `Bearer ${revokedKey}`;
      default:
        throw new Error(flavour);
    }
  };

  it('derives the routes from the app, and every one is documented', () => {
    expect(routes.length).toBeGreaterThanOrEqual(20);
    expect(routes.filter((r) => r.public).map((r) => `${r.method} ${r.path}`)).toEqual(
      expect.arrayContaining(['GET /health', 'GET /openapi.json']),
    );
  });

  it('refuses a missing, malformed, wrong or revoked key on every non-public route, and changes nothing', async () => {
    // given
    const before = await snapshot(ctx);
    const malformed = [
      '',
      'Bearer',
      'Bearer ',
      'bearer',
      `Basic ${Buffer.from('admin:admin').toString('base64')}`,
      `Token ${ADMIN_KEY}`,
      `Bearer ${ADMIN_KEY} extra`,
      `${ADMIN_KEY}`,
      `Bearer ${'a'.repeat(8192)}`,
      'Bearer graft_../../etc_passwd',
      `Bearer graft_${'a'.repeat(12)}_${'%'.repeat(40)}`,
    ];
    const checked: string[] = [];

    for (const route of routes.filter((r) => !r.public)) {
      const id = `${route.method} ${route.path}`;
      // when / then: no key
      expectError(await answer(send(route)), 401, 'UNAUTHORIZED');
      // malformed headers
      for (const header of malformed) {
        const response = await answer(send(route, header));
        expect([401], `${id} with "${header.slice(0, 40)}"`).toContain(response.status);
        expect(response.body.error.code).toBe('UNAUTHORIZED');
      }
      // well-formed but wrong, or revoked
      for (const flavour of ['wrong secret', 'unknown id', 'admin key, one character off', 'revoked']) {
        const response = await answer(send(route, keyOf(flavour)));
        expect(response.status, `${id} with a ${flavour} key`).toBe(401);
        expect(response.body.error.message).not.toContain(predictKey);
      }
      checked.push(id);
    }

    // and nothing in the store changed
    expect(checked.length).toBe(routes.filter((r) => !r.public).length);
    expect(await snapshot(ctx)).toEqual(before);
  });

  it('refuses a predict key on every admin route, whatever the request (no scope escalation)', async () => {
    const before = await snapshot(ctx);
    for (const route of routes.filter((r) => !r.public)) {
      const id = `${route.method} ${route.path}`;
      const response = await answer(send(route, `Bearer ${predictKey}`));
      if (PREDICT_ROUTES.has(id)) {
        expect([401, 403], id).not.toContain(response.status);
      } else {
        expect(response.status, id).toBe(403);
        expect(response.body.error.code).toBe('FORBIDDEN');
      }
    }
    // the classic escalations, spelled out
    const app = client(ctx.fetcher, predictKey);
    expectError(await app.post('/v1/keys', { name: 'mine', scopes: ['admin'] }), 403, 'FORBIDDEN');
    expectError(await app.del('/v1/keys/aaaaaaaaaaaa'), 403, 'FORBIDDEN');
    expectError(await app.post('/v1/tasks/alpha/models/v1/promote'), 403, 'FORBIDDEN');
    expectError(await app.put('/v1/tasks/alpha', { autoTrain: false }), 403, 'FORBIDDEN');
    expect(await snapshot(ctx)).toEqual(before);
  });

  it('accepts a valid key with the needed scope on every route', async () => {
    for (const route of routes.filter((r) => !r.public)) {
      const id = `${route.method} ${route.path}`;
      const response = await answer(send(route, `Bearer ${adminKey}`));
      expect([401, 403], `${id}: ${JSON.stringify(response.body).slice(0, 200)}`).not.toContain(
        response.status,
      );
    }
  });

  it('public routes answer without a key, and a forged upload token is refused without touching the store', async () => {
    const before = await snapshot(ctx);
    for (const route of routes.filter((r) => r.public)) {
      const response = await answer(send(route));
      expect(response.status, `${route.method} ${route.path}`).toBeLessThan(500);
    }
    const forged = [
      'x',
      `${Buffer.from(JSON.stringify({ key: 'tasks/alpha/incoming/a.jsonl', exp: 9e12 })).toString('base64url')}.AAAA`,
      '..%2F..%2Fetc%2Fpasswd',
    ];
    for (const token of forged) {
      const response = await answer(
        ctx.app.request(`/v1/uploads/${token}`, {
          method: 'PUT',
          headers: { 'content-type': 'application/x-ndjson' },
          body: toJsonl(makeTextDataset()),
        }),
      );
      expect(response.status, token).toBeGreaterThanOrEqual(400);
      expect(response.status, token).toBeLessThan(500);
      expect(response.body.error.code).toMatch(/^[A-Z_]+$/);
    }
    expect(await snapshot(ctx)).toEqual(before);
  });
});

async function answer(pending: Response | Promise<Response>) {
  const response = await pending;
  const text = await response.text();
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    body = { raw: text };
  }
  return { status: response.status, body };
}
