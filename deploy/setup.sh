#!/usr/bin/env bash
# A class hub for transferkit on one fresh Debian or Ubuntu server, in one command, as root,
# from a checkout of the repository:
#
#     sudo deploy/setup.sh --students 30
#
# That runs every step below in order; each step also runs alone (deploy/setup.sh STEP ...):
#
#   packages       Debian packages (python3-venv, nodejs, npm) where missing, and
#                  configurable-http-proxy 5 from npm
#   venv           $TK_VENV (/opt/transferkit-venv) from Debian's /usr/bin/python3, outside any
#                  home so every student can run it: binder/requirements.txt (the learners'
#                  packages, the same as Binder's and the Kubernetes image's),
#                  deploy/requirements-hub.txt (JupyterHub, the idle culler) and the kit
#   course [DIR]   the student version of the notebooks (tools/student_version.py: no solution
#                  cells) and the committed files they read, into DIR ($TK_SRV/transferkit/
#                  course): readable by all, copied into each ~/transferkit (also used by
#                  binder/postBuild for the image; the one step that needs no root)
#   teacher        the teacher's account ($TK_TEACHER, hub admin, 0700 home); /srv/teacher
#                  (0700: the notebooks with solutions, the answers, the nbgrader course folder
#                  for the grading step); /srv/nbgrader/exchange; and the shared cache built by
#                  the teacher in $TK_SRV/transferkit/cache (readable by all, writable by the
#                  teacher only)
#   students N|NAMES  Unix users student01..studentN (or the names given) in the group
#                  transferkit-students, homes 0700, random passwords in
#                  /root/transferkit-passwords.txt (0600)
#   start          the hub on port 8000 ($TK_PORT): a systemd service where systemd runs,
#                  else in the background (log /var/log/transferkit-hub.log)
#   stop           stop the hub, its proxy and every student's server
#
# Settings: TK_VENV, TK_SRV (/srv), TK_TEACHER (teacher), TK_PORT, TK_MEM_LIMIT, TK_CPU_LIMIT,
# TK_PASSWORDS, and the others deploy/jupyterhub_config.py reads.
set -euo pipefail

DEPLOY="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$DEPLOY")"
VENV="${TK_VENV:-/opt/transferkit-venv}"
SRV="${TK_SRV:-/srv}"
TEACHER="${TK_TEACHER:-teacher}"
GROUP="${TK_STUDENTS_GROUP:-transferkit-students}"
STATE="${TK_STATE_DIR:-$SRV/jupyterhub}"
SHARED_CACHE="${TK_SHARED_CACHE:-$SRV/transferkit/cache}"
COURSE="${TK_COURSE:-$SRV/transferkit/course}"
PASSWORDS="${TK_PASSWORDS:-/root/transferkit-passwords.txt}"
LOG=/var/log/transferkit-hub.log
UNIT=/etc/systemd/system/transferkit-hub.service

say() { printf '== %s\n' "$*"; }
need_root() { [ "$(id -u)" = 0 ] || { echo "deploy/setup.sh: run as root (sudo)" >&2; exit 2; }; }
has_systemd() { [ -d /run/systemd/system ]; }

step_packages() {
    local missing=()
    /usr/bin/python3 -c "import venv, ensurepip" 2>/dev/null || missing+=(python3-venv)
    command -v node >/dev/null || missing+=(nodejs)
    command -v npm >/dev/null || missing+=(npm)
    if [ ${#missing[@]} -gt 0 ]; then
        say "apt-get install ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
    if ! configurable-http-proxy --version 2>/dev/null | grep -q '^5\.'; then
        say "npm install -g configurable-http-proxy@5"
        npm install -g --silent configurable-http-proxy@5
    fi
}

step_venv() {
    say "virtual environment $VENV (from /usr/bin/python3)"
    [ -x "$VENV/bin/python" ] || /usr/bin/python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -r "$REPO/binder/requirements.txt" \
        -r "$DEPLOY/requirements-hub.txt"
    if has_systemd; then "$VENV/bin/python" -m pip install --quiet jupyterhub-systemdspawner==1.0.2; fi
    # the kit, not editable: built from a copy, so the checkout gets no build/ folder
    local tmp; tmp="$(mktemp -d)"
    cp -r "$REPO/pyproject.toml" "$REPO/transferkit" "$tmp/"
    "$VENV/bin/python" -m pip install --quiet --no-deps --force-reinstall "$tmp"
    rm -rf "$tmp"
    chmod -R a+rX "$VENV"
}

step_course() {
    local dest="${1:-$COURSE}"
    say "course (student version) in $dest"
    local tmp; tmp="$(mktemp -d)"
    "${TK_PYTHON:-/usr/bin/python3}" "$REPO/tools/student_version.py" "$tmp/notebooks" >/dev/null
    mkdir -p "$tmp/benchmarks/results" "$tmp/tests" "$tmp/docs/teaching"
    # the committed results the notebooks cite (not what a local benchmark run left there)
    (cd "$REPO" && { git ls-files benchmarks/results 2>/dev/null || ls benchmarks/results/*; } |
        while read -r f; do cp "$f" "$tmp/benchmarks/results/"; done)
    cp "$REPO/tests/reference_numerics.json" "$tmp/tests/"
    cp "$REPO/docs/teaching/questionnaires.md" "$REPO/docs/teaching/glossary.md" "$tmp/docs/teaching/"
    rm -rf "$dest.new" && mkdir -p "$(dirname "$dest")" && mv "$tmp" "$dest.new"
    chmod -R u=rwX,go=rX "$dest.new"
    rm -rf "$dest" && mv "$dest.new" "$dest"
}

make_user() {  # NAME [GROUP]: a Unix user with a 0700 home (useradd -m makes 0755 here)
    local name="$1"
    id "$name" >/dev/null 2>&1 || useradd -m -s /bin/bash ${2:+-G "$2"} "$name"
    chmod 700 "$(getent passwd "$name" | cut -d: -f6)"
}

step_teacher() {
    say "teacher account $TEACHER, /srv/teacher, shared cache $SHARED_CACHE"
    make_user "$TEACHER"
    # the teacher's own folder: the notebooks with solutions, the answers, later nbgrader's
    # course folder (source/, release/, submitted/, gradebook.db); nobody else may read it
    install -d -m 700 -o "$TEACHER" -g "$TEACHER" "$SRV/teacher" "$SRV/teacher/solutions" \
        "$SRV/teacher/course" "$SRV/teacher/course/source"
    cp "$REPO"/notebooks/*.ipynb "$REPO/docs/teaching/answers.md" "$SRV/teacher/solutions/"
    chown -R "$TEACHER:$TEACHER" "$SRV/teacher"
    chmod -R go= "$SRV/teacher"
    # nbgrader's exchange (grading, next step): students put submissions in, sticky like /tmp
    install -d -m 755 "$SRV/nbgrader" && install -d -m 1777 "$SRV/nbgrader/exchange"
    # the shared cache, built by the teacher: students read it, only the teacher writes it
    install -d -m 755 "$(dirname "$SHARED_CACHE")"
    install -d -m 755 -o "$TEACHER" -g "$TEACHER" "$SHARED_CACHE"
    # TK_PREPARE: what prepare builds (the hub test: "" = only the letters source); TK_KIT_PATH:
    # the kit to import instead of the installed one (the hub test: the checkout's)
    (cd / && runuser -u "$TEACHER" -- env TRANSFERKIT_CACHE="$SHARED_CACHE" \
        ${TK_KIT_PATH:+PYTHONPATH="$TK_KIT_PATH"} \
        "$VENV/bin/python" -m transferkit prepare ${TK_PREPARE---all-sources})
    chmod -R a+rX,go-w "$SHARED_CACHE"
}

step_students() {
    [ $# -gt 0 ] || { echo "deploy/setup.sh students N (or NAMES...)" >&2; exit 2; }
    local names=()
    if [ $# -eq 1 ] && [[ "$1" =~ ^[0-9]+$ ]]; then
        for i in $(seq -w 1 "$1"); do names+=("student$i"); done
    else
        names=("$@")
    fi
    say "${#names[@]} students in group $GROUP (passwords in $PASSWORDS)"
    getent group "$GROUP" >/dev/null || groupadd "$GROUP"
    touch "$PASSWORDS" && chmod 600 "$PASSWORDS"
    for name in "${names[@]}"; do
        if ! id "$name" >/dev/null 2>&1; then
            make_user "$name" "$GROUP"
            local password; password="$(/usr/bin/python3 -c 'import secrets; print(secrets.token_urlsafe(9))')"
            echo "$name:$password" | chpasswd
            echo "$name $password" >> "$PASSWORDS"
        else
            usermod -a -G "$GROUP" "$name" && make_user "$name"
        fi
    done
}

hub_env() {
    echo "TK_VENV=$VENV TK_STATE_DIR=$STATE TK_COURSE=$COURSE TK_SHARED_CACHE=$SHARED_CACHE" \
         "TK_TEACHER=$TEACHER TK_STUDENTS_GROUP=$GROUP"
}

step_start() {
    install -d -m 700 "$STATE"
    if has_systemd; then
        say "systemd service transferkit-hub"
        cat > "$UNIT" <<EOF
[Unit]
Description=transferkit class hub (JupyterHub)
After=network.target

[Service]
WorkingDirectory=$STATE
Environment=$(hub_env) TK_SPAWNER=systemd
ExecStart=$VENV/bin/jupyterhub -f $DEPLOY/jupyterhub_config.py
Restart=on-failure

[Install]
WantedBy=multi-user.target
EOF
        systemctl daemon-reload && systemctl enable --now transferkit-hub
    else
        say "hub in the background (no systemd), log $LOG"
        (cd "$STATE" && env $(hub_env) setsid nohup "$VENV/bin/jupyterhub" \
            -f "$DEPLOY/jupyterhub_config.py" >>"$LOG" 2>&1 < /dev/null &
         echo $! > "$STATE/jupyterhub.pid")
    fi
    for _ in $(seq 60); do
        if /usr/bin/python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:${TK_PORT:-8000}/hub/api/', timeout=2)" 2>/dev/null; then
            say "the hub answers on http://$(hostname -f 2>/dev/null || hostname):${TK_PORT:-8000}/"
            return 0
        fi
        sleep 1
    done
    echo "deploy/setup.sh: the hub did not answer within 60 s; see $LOG" >&2
    exit 1
}

step_stop() {
    if has_systemd && [ -f "$UNIT" ]; then systemctl stop transferkit-hub; return; fi
    local pid proxy
    if [ -f "$STATE/jupyterhub.pid" ]; then
        pid="$(cat "$STATE/jupyterhub.pid")"
        kill -TERM "$pid" 2>/dev/null || true  # the hub stops the students' servers
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
        rm -f "$STATE/jupyterhub.pid"
    fi
    if [ -f "$STATE/jupyterhub-proxy.pid" ]; then  # a proxy left running keeps the port
        proxy="$(cat "$STATE/jupyterhub-proxy.pid")"
        kill -TERM "$proxy" 2>/dev/null || true
        rm -f "$STATE/jupyterhub-proxy.pid"
    fi
}

main() {
    [ $# -gt 0 ] || set -- --help
    case "$1" in course|--help|-h) ;; *) need_root ;; esac
    case "$1" in
        --students)
            [ $# -eq 2 ] || { echo "deploy/setup.sh --students N" >&2; exit 2; }
            step_packages; step_venv; step_course; step_teacher; step_students "$2"; step_start ;;
        packages|venv|course|teacher|students|start|stop)
            local step="$1"; shift; "step_$step" "$@" ;;
        *) sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'; [ "$1" = --help ] || exit 2 ;;
    esac
}

main "$@"
