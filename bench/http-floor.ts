// Item 1's HTTP floor, in its own process: node:http alone, reading each request's body and answering a fixed JSON
// body of FLOOR_BODY_BYTES bytes (the size of the predict answer it stands beside), with no other work. What one
// round trip on 127.0.0.1 costs with the load generator on the same machine. Prints "running at <url>" like
// bench/serve.ts.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

const bytes = Number(process.env.FLOOR_BODY_BYTES ?? 0);
const body = JSON.stringify({ padding: 'x'.repeat(Math.max(0, bytes - '{"padding":""}'.length)) });
const headers = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };

const server = createServer((request, response) => {
  request.resume();
  request.on('end', () => {
    response.writeHead(200, headers);
    response.end(body);
  });
});
server.listen(Number(process.env.PORT ?? 0), process.env.HOST ?? '127.0.0.1', () => {
  console.log(`HTTP floor running at http://127.0.0.1:${(server.address() as AddressInfo).port}`);
});
