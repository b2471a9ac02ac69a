# syntax=docker/dockerfile:1
# The runtime alone (no torch, no TensorFlow): `sharpen run` on a model `sharpen export` made.
#   sharpen export --weights models/student-fast.pt --formats tflite-int8 --out export/
#   docker build -t sharpen-run .
#   docker run --rm -u "$(id -u):$(id -g)" -v $PWD/clips:/in:ro -v $PWD/out:/out sharpen-run \
#     --source /in/a.mp4 --out /out/a.mp4
# An .onnx model: --build-arg EXTRAS=runtime --build-arg MODEL=student-fast.onnx
# One stage: the source is a bind mount and pip keeps no cache, so the install leaves nothing
# behind that a second stage would drop. .dockerignore keeps the checkout's .venv out.
FROM python:3.11-slim
# The pip extra of the model's engine (runtime: ONNX Runtime, litert: LiteRT), and the model in
# export/ the image runs.
ARG EXTRAS=litert
ARG MODEL=student-fast_int8.tflite
# The venv has no pip or setuptools of its own; the base image's pip installs into it.
RUN --mount=type=bind,source=.,target=/src python -m venv --without-pip /opt/sharpen \
    && pip --python /opt/sharpen/bin/python install --no-cache-dir --root-user-action=ignore \
       --disable-pip-version-check "/src[${EXTRAS}]"
# Readable by any user: an export made under umask 077 is owner-only, and root owns the copy.
COPY --chmod=0444 export/${MODEL} /models/
ENV SHARPEN_RUN_MODEL=/models/${MODEL}
USER 65534:65534
# sh only reads the model's path (an exec-form ENTRYPOINT expands no variable); exec leaves
# sharpen as PID 1, which docker stop's SIGTERM reaches.
ENTRYPOINT ["/bin/sh", "-c", \
            "exec /opt/sharpen/bin/sharpen run --model \"$SHARPEN_RUN_MODEL\" \"$@\"", "sharpen"]
