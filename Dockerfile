FROM python:3.11-slim
# WordNet 3.0 database for the ImageNet family builder (read through nltk).
RUN apt-get update && apt-get install -y --no-install-recommends wordnet-base wordnet-sense-index \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/fewtask
COPY pyproject.toml README.md ./
COPY fewtask_data ./fewtask_data
COPY trainer ./trainer
COPY manifests ./manifests
RUN pip install --no-cache-dir torch==2.14.1 torchvision==0.29.1 && pip install --no-cache-dir .
ENTRYPOINT ["fewtask-data"]
CMD ["--help"]
