# The Accord services for deploy/compose.yaml: the checkout, installed as `deploy/bootstrap` installs it.
FROM python:3.11-slim
WORKDIR /opt/accord
COPY pyproject.toml README.md ./
COPY services services
COPY schemas schemas
COPY deploy deploy
RUN pip install --no-cache-dir -e . && useradd --system --home /var/lib/accord accord \
    && mkdir -p /var/lib/accord && chown accord /var/lib/accord
USER accord
