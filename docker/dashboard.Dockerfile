# syntax=docker/dockerfile:1
# The Streamlit dashboard: a slim Python with the client and dashboard packages, no TensorFlow
# (the Triton server computes everything).
#
# Build from the repository root (docker-compose.yml does this):
#   docker build -f docker/dashboard.Dockerfile -t gradcam-dashboard .
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1

WORKDIR /opt/gradcam
COPY requirements/constraints.txt requirements/constraints.txt
COPY client/pyproject.toml client/pyproject.toml
COPY client/src client/src
COPY dashboard/pyproject.toml dashboard/pyproject.toml
COPY dashboard/src dashboard/src
RUN python -m pip install -c requirements/constraints.txt ./client ./dashboard \
 && python -c "import gradcam_client.triton, gradcam_dashboard" \
 && if python -c "import tensorflow" 2>/dev/null; then echo "TensorFlow must not be here"; exit 1; fi \
 && rm -rf client/build dashboard/build \
 && useradd --create-home --uid 1000 gradcam

USER gradcam
WORKDIR /home/gradcam
EXPOSE 8501
# The Triton address comes from GRADCAM_URL and GRADCAM_METRICS_URL (docker-compose.yml).
CMD ["gradcam-dashboard", "--port", "8501", "--address", "0.0.0.0"]
