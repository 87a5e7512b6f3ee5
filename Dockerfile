# The nurture app image: API, worker and migrations (pick with the command).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared shared
COPY workers workers
COPY api api
COPY cli cli
RUN pip install --no-cache-dir .
ENV NURTURE_API_HOST=0.0.0.0
USER nobody
ENTRYPOINT ["nurture"]
CMD ["api"]
