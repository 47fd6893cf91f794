# The vitalflow serving image: `vitalflow serve` as a SageMaker inference container.
#
# SageMaker's container contract: it unpacks the model's model.tar.gz into /opt/ml/model, starts
# the container as `docker run IMAGE serve` (so CMD is replaced by the same word) and talks to it
# on port 8080: GET /ping (healthy once the model is loaded) and POST /invocations.
#
#   docker build -t vitalflow:0.1.0 .
#   docker run --rm -p 8080:8080 -v $PWD/model:/opt/ml/model:ro vitalflow:0.1.0
#
# `vitalflow deploy` defaults to <account>.dkr.ecr.<region>.amazonaws.com/vitalflow:<version>
# (README "Deploy to SageMaker" shows the push to ECR).

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# what the package build reads: pyproject.toml names README.md and LICENSE
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
# the serve extra (FastAPI, uvicorn, httpx; the model's TensorFlow through train) and aws (boto3:
# SNS notifications), into a venv the runtime stage copies whole
RUN python -m venv /opt/vitalflow \
 && /opt/vitalflow/bin/pip install ".[serve,aws]"

FROM python:3.11-slim
ENV PATH=/opt/vitalflow/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VITALFLOW_HOME=/home/vitalflow/.vitalflow \
    VITALFLOW_CACHE=/home/vitalflow/.cache/vitalflow
COPY --from=build /opt/vitalflow /opt/vitalflow
# an unprivileged user; /opt/ml/model is where SageMaker (or `docker run -v`) puts the model
RUN useradd --create-home --uid 1000 --shell /usr/sbin/nologin vitalflow \
 && mkdir -p /opt/ml/model \
 && chown vitalflow:vitalflow /opt/ml/model
USER vitalflow
WORKDIR /home/vitalflow
EXPOSE 8080
ENTRYPOINT ["vitalflow"]
CMD ["serve"]
