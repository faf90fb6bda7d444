#!/bin/bash
. "$(dirname "$0")/lib/common.sh"
for step in fetch build; do
    "$(dirname "$0")/step.sh" "$step"
done
python3 -c 'import subprocess; print("python: false ->", subprocess.call(["false"]))'
