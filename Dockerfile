# The nurture app image: API, worker and migrations (pick with the command).
# the interpreter's patch level pinned: a rebuild does not change it silently
FROM python:3.11.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared shared
COPY store store
COPY services services
COPY workers workers
COPY api api
COPY cli cli
COPY bench bench
RUN pip install --no-cache-dir .
ENV NURTURE_API_HOST=0.0.0.0
USER nobody
ENTRYPOINT ["nurture"]
CMD ["api"]
