# syntax=docker/dockerfile:1
# The Grad-CAM Triton server: NVIDIA's official Triton image plus TensorFlow and this
# repository's server and client packages, installed into the image's own Python (Ubuntu 24.04's
# Python 3.12 in release 24.12), which Triton's python backend embeds to run model.py.
#
# Build from the repository root (docker-compose.yml does this):
#   docker build -f docker/triton.Dockerfile -t gradcam-triton:24.12-gpu .
#   docker build -f docker/triton.Dockerfile --build-arg TENSORFLOW=tensorflow-cpu==2.21.0 \
#       -t gradcam-triton:24.12-cpu .
# Release 24.12 is Triton 2.53 with the python backend stub built for Python 3.12; 25.02 is
# the last release with a TensorFlow backend, which this image does not use (the SavedModel runs
# inside the python backend).
ARG TRITON_RELEASE=24.12
FROM nvcr.io/nvidia/tritonserver:${TRITON_RELEASE}-py3

# tensorflow[and-cuda] brings the CUDA libraries TensorFlow was built against; the CPU-only
# variant (docker-compose.cpu.yml) passes tensorflow-cpu instead.
ARG TENSORFLOW="tensorflow[and-cuda]==2.21.0"

# The image's Python is the system one (PEP 668): pip may install into it, which is what the
# python backend needs.
ENV PIP_BREAK_SYSTEM_PACKAGES=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    KERAS_HOME=/opt/gradcam/keras

WORKDIR /opt/gradcam
COPY requirements/constraints.txt requirements/constraints.txt
COPY client/pyproject.toml client/pyproject.toml
COPY client/src client/src
COPY server/pyproject.toml server/pyproject.toml
COPY server/src server/src
RUN python3 -c "import sys; print('Python', sys.version)" \
 && (python3 -m pip --version || (apt-get update \
     && apt-get install -y --no-install-recommends python3-pip \
     && rm -rf /var/lib/apt/lists/*)) \
 && python3 -m pip install -c requirements/constraints.txt "${TENSORFLOW}" ./client ./server \
 && python3 -c "import tensorflow as tf, gradcam_server.triton_model; print('TensorFlow', tf.__version__)" \
 && rm -rf client/build server/build

COPY docker/triton.env docker/triton_entrypoint.py /opt/gradcam/
# uid 1000 is the image's triton-server user (NVIDIA's Helm chart runs as it): let it export.
RUN mkdir -p /models /opt/gradcam/keras && chown 1000:1000 /models /opt/gradcam/keras

EXPOSE 8000 8001 8002
# NVIDIA's entrypoint first (banner, CUDA forward-compatibility), then ours: export the model
# repository if it is empty, then exec tritonserver with the flags of triton.env.
ENTRYPOINT ["/opt/nvidia/nvidia_entrypoint.sh", "python3", "/opt/gradcam/triton_entrypoint.py"]
CMD ["tritonserver"]
