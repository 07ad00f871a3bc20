#!/bin/sh
# Entry point of the Triton image: run the command (gradcam-server serve ...) as a user who may
# write the model repository, never as root.
#
# Started as root (the default), it runs the command as the owner of the repository folder, so
# a host folder mounted there (./model_repository) keeps its owner's files; a folder owned by
# root is first handed to the image's user `gradcam`. Started as another user (docker run --user,
# Kubernetes runAsUser), it runs the command as that user.
#
# `tritonserver FLAGS...` as the command (what NVIDIA's Helm chart and KServe pass) runs
# `gradcam-server serve` with those flags for Triton, its --model-repository as the repository.
set -eu
repository=${GRADCAM_MODEL_REPOSITORY:-/models}
if [ "${1:-}" = tritonserver ]; then
    shift
    for flag in "$@"; do
        shift
        case "$flag" in
            --model-repository=*) repository=${flag#--model-repository=} ;;
            *) set -- "$@" "$flag" ;;
        esac
    done
    set -- gradcam-server serve --repository "$repository" --echo-log \
        --log-file /tmp/tritonserver.log -- "$@"
fi
if [ "$(id -u)" != 0 ]; then
    exec "$@"
fi
mkdir -p "$repository"
if [ "$(stat -c %u "$repository")" = 0 ]; then
    chown -R gradcam:gradcam "$repository"
fi
uid=$(stat -c %u "$repository")
gid=$(stat -c %g "$repository")
home=$(getent passwd "$uid" | cut -d: -f6)
export HOME="${home:-/tmp}"
exec setpriv --reuid="$uid" --regid="$gid" --clear-groups "$@"
