// One Lambda cold start, for item 5 of `npm run bench`: bundled by bench/cold-start.ts the way the CDK bundles the
// API function, then run in a fresh process: module load, the model fetched from S3 (a local S3 server), first
// inference. Prints the times since the process started, in ms.
const entered = performance.now();
const { createApiHandler } = await import('../src/adapters/aws/api-handler.js');
const { loadAwsConfig } = await import('../src/config.js');
const { httpApiV2Event, lambdaContext } = await import('../test/fixtures/aws/events.js');
const loaded = performance.now();

const handler = createApiHandler(loadAwsConfig(process.env));
const event = httpApiV2Event({
  method: 'POST',
  path: `/v1/tasks/${process.env.BENCH_TASK}/predict`,
  headers: { authorization: `Bearer ${process.env.BENCH_API_KEY}`, 'content-type': 'application/json' },
  body: JSON.stringify({ inputs: [process.env.BENCH_INPUT ?? 'hello'] }),
});
const response = (await handler(event as never, lambdaContext() as never)) as { statusCode: number };
const answered = performance.now();
console.log(
  JSON.stringify({
    enteredMs: entered,
    moduleMs: loaded,
    firstPredictionMs: answered,
    status: response.statusCode,
  }),
);
// The SDK's sockets would keep the process alive; Lambda freezes it instead.
process.exit(0);
