# One image for every rfarm process: `rfarmctl migrate`, `rfarmctl gateway`, `rfarmctl node`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY . .
RUN pip install . \
    && useradd --system --create-home --uid 10001 rfarm \
    && mkdir -p /renders \
    && chown rfarm:rfarm /renders

USER rfarm
WORKDIR /home/rfarm
ENTRYPOINT ["rfarmctl"]
CMD ["--help"]
