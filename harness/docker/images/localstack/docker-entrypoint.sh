#!/bin/sh
# LocalStack resolves s3.localhost.localstack.cloud once (public DNS says 127.0.0.1); offline that lookup would hang
# on the upstream resolver, so answer it from /etc/hosts.
if ! grep -q 'localhost.localstack.cloud' /etc/hosts 2>/dev/null; then
    echo '127.0.0.1 localhost.localstack.cloud s3.localhost.localstack.cloud' >> /etc/hosts 2>/dev/null || true
fi
exec "$@"
