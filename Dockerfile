# brainlossnet BIDS App: CUDA-capable image (docs/containers.md).
#
#   docker build -t brainlossnet:0.1.0 .
#   docker run --rm --gpus all -v /data/bids:/data:ro -v /data/out:/out -v /data/work:/work \
#       brainlossnet:0.1.0 /data /out participant -w /work
#
# torch comes from PyPI: its default Linux x86_64 wheel is built with CUDA and brings the
# CUDA runtime libraries as wheels, so the base image needs no CUDA toolkit; the host
# only needs an NVIDIA driver (and the NVIDIA container toolkit for --gpus). Without a
# GPU the same image runs on the CPU (--device auto).
#
# Nothing is downloaded at run time: the registration network and the calibration
# profiles are package data of brainlossnet, deepbet's networks are inside its wheel,
# and the build checks that all of them load.

FROM python:3.11-slim-bookworm

# Torch release installed first (the largest layer, cached across code changes); it
# must lie in the package's range (pyproject.toml: torch>=2.2,<3). 2.13.0 is the
# release the test suite runs with.
ARG TORCH_VERSION=2.13.0
# Which torch build. Empty (default): PyPI's Linux wheel, built with CUDA (several GB of
# CUDA libraries). A much smaller CPU-only image (CI, CPU-only clusters):
#   --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_INDEX_URL=""
# Optional folder of wheels searched first (offline or cached builds), e.g.
# podman build -v /opt/wheels:/wheels:ro --build-arg WHEELS_DIR=/wheels ...
ARG WHEELS_DIR=""
# Must equal the package's version (checked below); recorded in the derivatives'
# dataset_description.json as GeneratedBy.Container.Tag, with IMAGE_TAG.
ARG BRAINLOSSNET_VERSION=0.1.0
ARG IMAGE_TAG=brainlossnet:${BRAINLOSSNET_VERSION}

LABEL org.opencontainers.image.title="brainlossnet" \
      org.opencontainers.image.description="BrainLossNet BIDS App: percent brain volume change between T1w sessions" \
      org.opencontainers.image.version="${BRAINLOSSNET_VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# tini as PID 1: forwards signals (docker stop) to the BIDS App and reaps the worker
# processes of Pydra's cf plugin. The App runs as the non-root user brainlossnet (1000).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 1000 brainlossnet \
    && useradd --uid 1000 --gid 1000 --create-home --home-dir /home/brainlossnet \
        --shell /bin/bash brainlossnet

# A layer of its own: several GB that need not be rebuilt when the package changes.
# hadolint ignore=DL3059
RUN pip install ${TORCH_INDEX_URL:+--index-url $TORCH_INDEX_URL} ${WHEELS_DIR:+--find-links $WHEELS_DIR} \
        "torch==${TORCH_VERSION}" \
    && python -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"

COPY pyproject.toml README.md /opt/brainlossnet/src/
COPY brainlossnet /opt/brainlossnet/src/brainlossnet
RUN pip install ${WHEELS_DIR:+--find-links $WHEELS_DIR} /opt/brainlossnet/src \
    && rm -rf /opt/brainlossnet/src

# No network at run time: no etelemetry version checks (Pydra, nipype); plot without a
# display. One thread per process by default: ITK on one thread is what makes the ANTs
# stages bitwise reproducible, and parallelism comes from running several pairs at once
# (--nprocs). Override with -e OMP_NUM_THREADS=... (docker) or --env (apptainer).
ENV NO_ET=1 \
    NIPYPE_NO_ET=1 \
    MPLBACKEND=Agg \
    OMP_NUM_THREADS=1 \
    MKL_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1 \
    NUMEXPR_NUM_THREADS=1 \
    ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    BRAINLOSSNET_CONTAINER_TYPE=docker \
    BRAINLOSSNET_CONTAINER_TAG=${IMAGE_TAG} \
    HOME=/home/brainlossnet

# Build-time checks: the installed version is the one this image is tagged with, and
# every network loads from inside the image (ours from package data, deepbet's from
# its wheel).
RUN test "$(python -c 'import brainlossnet; print(brainlossnet.__version__)')" = "${BRAINLOSSNET_VERSION}" \
    && brainlossnet --version \
    && python -c "from brainlossnet.registration import load_registration_model; load_registration_model('cpu')" \
    && python -c "from deepbet import BrainExtraction; BrainExtraction(no_gpu=True)"

# matplotlib's font cache is built once, in the home that any user id may write to, so
# that `docker run -u "$(id -u):$(id -g)"` works too (torch and matplotlib keep caches
# there).
RUN python -c "import matplotlib.pyplot" \
    && chmod -R a+rwX /home/brainlossnet

USER 1000:1000
WORKDIR /home/brainlossnet

ENTRYPOINT ["/usr/bin/tini", "--", "brainlossnet"]
CMD ["--help"]
