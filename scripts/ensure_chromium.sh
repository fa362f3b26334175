#!/usr/bin/env bash
# The browser test drives Debian's Chromium through Playwright (no browser download). Install it when
# missing and we are allowed to; otherwise the test is skipped with a clear reason.
set -u
if command -v chromium >/dev/null 2>&1 || [ -x /usr/lib/chromium/chromium ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "==> instalando o Chromium do Debian para o teste de navegador (≈40 s)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
    || echo "    aviso: não consegui instalar o chromium; o teste de navegador será pulado" >&2
else
  echo "    aviso: chromium ausente e sem root/apt; o teste de navegador será pulado" >&2
fi
exit 0
