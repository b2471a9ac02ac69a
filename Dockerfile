# syntax=docker/dockerfile:1
# The runtime alone (no torch, no TensorFlow): `sharpen run` on a model `sharpen export` made.
#   sharpen export --weights models/student-fast.pt --formats tflite-int8 --out export/
#   docker build -t sharpen-run .
#   docker run --rm -u "$(id -u):$(id -g)" -v $PWD/clips:/in:ro -v $PWD/out:/out sharpen-run \
#     --source /in/a.mp4 --out /out/a.mp4
# For an .onnx model: --build-arg EXTRAS=runtime and the two model lines below.
# One stage: the source is a bind mount and pip keeps no cache, so the install leaves nothing
# behind that a second stage would drop. .dockerignore keeps the checkout's .venv out.
FROM python:3.11-slim
ARG EXTRAS=litert
# The venv has no pip or setuptools of its own; the base image's pip installs into it.
RUN --mount=type=bind,source=.,target=/src python -m venv --without-pip /opt/sharpen \
    && pip --python /opt/sharpen/bin/python install --no-cache-dir --root-user-action=ignore \
       --disable-pip-version-check "/src[${EXTRAS}]"
COPY export/student-fast_int8.tflite /models/
USER 65534:65534
ENTRYPOINT ["/opt/sharpen/bin/sharpen", "run", "--model", "/models/student-fast_int8.tflite"]
