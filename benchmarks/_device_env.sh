# Sourced by the GPU scripts (gpu_check.sh, gpu_video_motion.sh) from the repository root, with
# DEVICE set: picks the Python ($PY: .venv's for a CPU dry run here, else python3) and, where
# the project is not installed (the device machine: no internet), installs the carried wheels
# (.whl/) and the project itself offline.
PY=${PYTHON:-python3}
[[ -x .venv/bin/python && "$DEVICE" == cpu ]] && PY=.venv/bin/python
if ! $PY -c "import multissl.adapters" 2>/dev/null; then
    if compgen -G ".whl/*.whl" >/dev/null; then
        $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    fi
    # editable install: multissl.adapters / multissl.recipes are mapped folders (pyproject.toml)
    $PY -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null
fi
