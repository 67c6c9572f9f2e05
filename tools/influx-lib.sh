# Shared by tools/compare-ingest.sh and tools/hardening-figures.sh (sourced, not run):
# a Debian InfluxDB 1.x config whose every path lies under one directory and whose
# every port is on loopback, so a run never touches /var/lib/influxdb.

influx_config() { # DIR HTTP_PORT RPC_PORT -> DIR/influxdb.conf
  influxd config -config /dev/null 2>/dev/null | python3 -c '
import re, sys
d, http_port, rpc_port = sys.argv[1:4]
paths = {("meta", "dir"): d + "/meta", ("data", "dir"): d + "/data",
         ("data", "wal-dir"): d + "/wal", ("http", "bind-socket"): d + "/influxdb.sock"}
section, out = "", []
for line in sys.stdin.read().splitlines():
    m = re.match(r"\s*\[\[?([^\]]+)\]\]?\s*$", line)
    if m:
        section = m.group(1)
    m = re.match(r"(\s*)([A-Za-z0-9_-]+)\s*=\s*(.*)$", line)
    if m:
        indent, key, value = m.groups()
        if (section, key) in paths:
            line = f"{indent}{key} = \"{paths[section, key]}\""
        elif key == "bind-address":
            if section == "":
                line = f"{indent}{key} = \"127.0.0.1:{rpc_port}\""
            elif section == "http":
                line = f"{indent}{key} = \"127.0.0.1:{http_port}\""
            else:  # services that stay disabled: loopback all the same
                line = re.sub(r"\"[^\"]*:(\d+)\"", lambda m: "\"127.0.0.1:" + m.group(1) + "\"", line)
        elif key == "reporting-enabled":  # Debian renamed upstream reporting-disabled
            line = f"{indent}{key} = false"
        elif key == "reporting-disabled":
            line = f"{indent}{key} = true"
    out.append(line)
text = "\n".join(out) + "\n"
if not re.search(r"(?m)^reporting-disabled\s*=", text):
    text = "reporting-disabled = true\n" + text
for path in ("/var/lib/influxdb", "/root/.influxdb", "/var/run/"):
    if path in text:
        sys.exit(f"influxdb config still names {path}")
open(d + "/influxdb.conf", "w").write(text)
' "$1" "$2" "$3"
}
