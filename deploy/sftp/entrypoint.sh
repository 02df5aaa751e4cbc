#!/bin/bash
# Creates the SFTP user (SFTP_USER, SFTP_PASSWORD; SFTP_UID optional) and the host key when
# missing, then runs sshd in the foreground, logging to stderr.
set -euo pipefail
user=${SFTP_USER:?set SFTP_USER}
password=${SFTP_PASSWORD:?set SFTP_PASSWORD}
key=/etc/ssh/keys/ssh_host_ed25519_key
[ -f "$key" ] || ssh-keygen -q -t ed25519 -N '' -C "happytimes-sftp" -f "$key"
if ! id "$user" >/dev/null 2>&1; then
  useradd --no-create-home --home-dir "/home/$user" --shell /usr/sbin/nologin \
    ${SFTP_UID:+--uid "$SFTP_UID"} --gid sftponly "$user"
fi
echo "$user:$password" | chpasswd
# The chroot must be root's and not writable by others; the upload directory is the user's.
install -d -o root -g root -m 0755 "/home/$user"
install -d -o "$user" -g sftponly -m 0755 "/home/$user/upload"
echo "sftp: user $user, files in /home/$user/upload (sftp path /upload); host key $(ssh-keygen -lf "$key.pub")" >&2
exec /usr/sbin/sshd -D -e
