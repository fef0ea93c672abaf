# One image for every part of the platform: `community cloud`, `community edge`,
# `community simulate` and `community db upgrade` (docker-compose.yml runs it four ways).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The source (see .dockerignore for what stays out). device_profiles/ and examples/ are read
# at run time: a gateway config names its profiles folder relative to itself.
COPY . .

# Cloud and edge extras: the same image serves both sides (the edge alone needs only [edge]).
RUN pip install '.[cloud,edge]' \
    && rm -rf build ./*.egg-info

# Never run as root. `var/` is the cloud's data folder: secrets.json, attachments, the SMS log
# (a volume in docker-compose; owned by the user so a fresh volume is writable).
RUN groupadd --system --gid 10001 community \
    && useradd --system --uid 10001 --gid community --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin community \
    && mkdir -p /app/var \
    && chown community:community /app/var
USER community

EXPOSE 8000
ENTRYPOINT ["community"]
CMD ["--help"]
