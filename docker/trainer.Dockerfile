# The Graft trainer for AWS Batch: Node 22 + onnxruntime-node with its CUDA execution provider, running
# functions/aws/trainer.ts on the job whose id Batch passes in GRAFT_JOB_ID.
#
# Built by `cdk deploy` (ContainerImage.fromAsset, linux/amd64) with the repository as context. Locally:
#   docker build -f docker/trainer.Dockerfile -t graft-trainer .
#   docker build -f docker/trainer.Dockerfile --build-arg BASE_IMAGE=ubuntu:24.04 --build-arg ORT_INSTALL=skip -t graft-trainer-cpu .
#
# onnxruntime-node 1.30 is built against CUDA 12 and cuDNN 9: the base image must carry both runtimes.
ARG BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
ARG NODE_IMAGE=node:22-bookworm-slim

FROM ${NODE_IMAGE} AS node

FROM ${BASE_IMAGE}
# cuda12: onnxruntime-node's install script fetches its CUDA/TensorRT provider libraries (NuGet) into the
# package; skip: CPU only (the CPU binaries ship inside the npm package).
ARG ORT_INSTALL=cuda12
ENV NODE_ENV=production \
    ONNXRUNTIME_NODE_INSTALL=${ORT_INSTALL}

COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules /usr/local/lib/node_modules
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
 && apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && node --version

WORKDIR /app
COPY package.json package-lock.json .npmrc ./
COPY cdk/scripts/prune-onnxruntime.mjs /tmp/prune-onnxruntime.mjs
# Production dependencies only (tsx, a dependency, runs the TypeScript entry without a build step), then drop
# onnxruntime-node's darwin/win32/arm64 builds: about 240 MB the image does not need.
# The install script runs again explicitly (it is a no-op when the files are there) so that an npm that gates
# install scripts cannot leave the image without the CUDA provider; the build fails if it is still missing.
RUN npm ci --omit=dev --no-audit --no-fund \
 && if [ "$ORT_INSTALL" != "skip" ]; then \
      (cd node_modules/onnxruntime-node && node script/install) \
      && test -f node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so; \
    fi \
 && node /tmp/prune-onnxruntime.mjs node_modules linux x64 \
 && npm cache clean --force
COPY tsconfig.json ./
COPY src ./src
COPY functions ./functions

# Batch runs the container as the job role; nothing here needs root.
RUN useradd --system --uid 10001 graft && chown -R graft /app
USER graft
# node itself is PID 1, so its exit code (0 done, 1 retry, 2 failed) is what Batch sees.
CMD ["node", "--import", "tsx", "functions/aws/trainer.ts"]
