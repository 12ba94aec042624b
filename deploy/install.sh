#!/usr/bin/env bash
# Install the appliance on a rig box (Debian/Ubuntu with systemd), from this source checkout.
#
#   sudo deploy/install.sh [--with-train] [--timer]
#
# --with-train  also install the training extra (torch CPU build, transformers): needed for
#               fine-tuning on this box.
# --timer       use the systemd timer for the nightly fine-tune instead of the daemon's own
#               schedule.
# Re-running is safe: the venv is updated, existing config, keys and data are kept.
set -euo pipefail

SRC="$(cd "$(dirname "$0")/.." && pwd)"
PREFIX=/opt/appliance
CONF=/etc/appliance
DATA=/var/lib/appliance
WITH_TRAIN=0
TIMER=0
for arg in "$@"; do
  case "$arg" in
    --with-train) WITH_TRAIN=1 ;;
    --timer) TIMER=1 ;;
    *) echo "install.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "install.sh: run as root (sudo)" >&2; exit 2; }

id appliance >/dev/null 2>&1 || useradd --system --home-dir "$DATA" --shell /usr/sbin/nologin appliance
install -d -o appliance -g appliance -m 0750 "$DATA"
install -d -m 0755 "$PREFIX" "$CONF"

# The code, with the shipped baseline model (models/baseline) next to it.
rsync -a --delete --exclude .git --exclude appliance-home "$SRC/" "$PREFIX/src/"
python3 -m venv "$PREFIX/venv"
"$PREFIX/venv/bin/pip" install --upgrade pip >/dev/null
if [ "$WITH_TRAIN" -eq 1 ]; then
  "$PREFIX/venv/bin/pip" install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
  "$PREFIX/venv/bin/pip" install -e "$PREFIX/src[train]"
else
  "$PREFIX/venv/bin/pip" install -e "$PREFIX/src"
fi

if [ ! -f "$CONF/appliance.toml" ]; then
  install -m 0640 -g appliance "$SRC/deploy/appliance.toml" "$CONF/appliance.toml"
fi
if [ "$TIMER" -eq 1 ]; then
  sed -i 's/^enabled = true/enabled = false/' "$CONF/appliance.toml"
fi

# Keys are created while the daemon is stopped (it holds the store once running).
systemctl stop appliance.service 2>/dev/null || true
if [ ! -f "$CONF/nightly.env" ]; then
  KEY="$(sudo -u appliance "$PREFIX/venv/bin/appliance" keys create nightly --home "$DATA" --json \
         | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')"
  umask 077
  printf 'APPLIANCE_KEY=%s\n' "$KEY" > "$CONF/nightly.env"
  chown root:appliance "$CONF/nightly.env"
  chmod 0640 "$CONF/nightly.env"
fi

install -m 0644 "$SRC/deploy/appliance.service" /etc/systemd/system/appliance.service
install -m 0644 "$SRC/deploy/appliance-nightly.service" /etc/systemd/system/appliance-nightly.service
install -m 0644 "$SRC/deploy/appliance-nightly.timer" /etc/systemd/system/appliance-nightly.timer
systemctl daemon-reload
systemctl enable --now appliance.service
if [ "$TIMER" -eq 1 ]; then
  systemctl enable --now appliance-nightly.timer
fi

echo "appliance installed: http://127.0.0.1:8470 (settings $CONF/appliance.toml, data $DATA)"
echo "create an operator key (daemon stopped): sudo systemctl stop appliance;"
echo "  sudo -u appliance $PREFIX/venv/bin/appliance keys create NAME --home $DATA; sudo systemctl start appliance"
