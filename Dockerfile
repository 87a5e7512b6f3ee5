# The nurture app image: API, worker and migrations (pick with the command).
# the interpreter's patch level pinned: a rebuild does not change it silently
FROM python:3.11.11-slim
WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
COPY shared shared
COPY store store
COPY services services
COPY workers workers
COPY api api
COPY cli cli
COPY bench bench
# every dependency as locked, each file checked against its hash; then the project alone
RUN pip install --no-cache-dir --require-hashes -r requirements.lock \
    && pip install --no-cache-dir --no-deps .
ENV NURTURE_API_HOST=0.0.0.0
USER nobody
ENTRYPOINT ["nurture"]
CMD ["api"]
