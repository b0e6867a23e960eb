#!/bin/sh
# One login for both servers: the user and password files the harness mounts (0600, never on a
# command line) become one bcrypt htpasswd file, readable by nginx's workers.
set -eu
install -d -m 0750 -g www-data /run/inferops
htpasswd -iBc /run/inferops/htpasswd "$(cat /etc/inferops/auth/username)" \
  </etc/inferops/auth/password 2>/dev/null
chgrp www-data /run/inferops/htpasswd
chmod 0640 /run/inferops/htpasswd
nginx
exec docker-registry serve /etc/docker/registry/config.yml
