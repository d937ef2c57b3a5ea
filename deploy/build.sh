#!/bin/sh
# Builds what the image ships besides the code: static files with their manifest, compressed, exactly as
# production serves them (DEBUG off). The image's Dockerfile and the production smoke test both run this.
# Usage: deploy/build.sh [PYTHON]   (STATIC_ROOT in the environment chooses where the files go)
set -eu
cd "$(dirname "$0")/.."
PYTHON="${1:-python}"
# Settings refuse to load without secrets when DEBUG is off; the build uses throwaway ones that nothing keeps.
build_secret=$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(50))')
build_key=$("$PYTHON" -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())')
DEBUG=false OMLENGINE_ENABLED=false SECRET_KEY="$build_secret" ENCRYPTION_KEYS="$build_key" AUDIT_HMAC_KEYS="$build_secret" \
  "$PYTHON" manage.py collectstatic --noinput --verbosity 0
echo "static files built in ${STATIC_ROOT:-var/staticfiles}"
