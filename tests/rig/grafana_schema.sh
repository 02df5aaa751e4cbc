#!/usr/bin/env bash
# Offline type check of Grafana dashboard JSON against Grafana's own TypeScript types.
#
#   tests/rig/grafana_schema.sh install      npm-install @grafana/schema and typescript (pinned)
#                                            into $HAPPYSTREAMS_TOOLS/grafana-schema (no-op when
#                                            present); prints that directory
#   tests/rig/grafana_schema.sh check [DIR]  type-check every DIR/*.json (default the repo's
#                                            deploy/grafana/dashboards) as a `Dashboard`; prints
#                                            FILE:LINE:COL of each error and exits 1 on any
#
# Each dashboard becomes `<name>.ts`: `import type { DashboardJson } from "./_dashboard"; export
# const d: DashboardJson = <json>;`, with the JSON from line 1 on so that tsc's lines are the JSON
# file's, checked with `tsc --noEmit --strict`. `_dashboard.ts` (written below) builds
# DashboardJson from @grafana/schema's `Dashboard`, with three changes:
# - Panels are typed per plugin: timeseries, stat and bargauge panels get their plugin's
#   `options` and `fieldConfig.defaults.custom` types (the generic Panel has
#   `Record<string, unknown>` there, so nothing inside would be checked). Another panel type
#   fails the check until it is added to KnownPanel there (its types are under
#   @grafana/schema/dist/esm/raw/composable/<plugin>/panelcfg/x/).
# - `Json<T>` turns string enums (ThresholdsMode, FieldColorModeId, LegendDisplayMode, ...) into
#   their values: TypeScript's string enums are nominal, so a plain `Dashboard` refuses every
#   `"mode": "absolute"` that Grafana itself writes. Numeric enums stay (`"refresh": 9` fails).
# - Targets are Prometheus queries (`PrometheusTarget` there, as @grafana/schema has no
#   Prometheus query type): `refId` and `expr` required, other keys from Grafana's PromQuery.
# Caught: wrong types, missing required keys, unknown keys and bad enum values on the dashboard,
# templating, panels, gridPos, datasource refs, fieldConfig, targets and the known panels'
# options and custom field config. Not caught: whether a PromQL expression is valid or returns
# anything (the integration test runs them on a real Prometheus). TypeScript reports one error
# per object literal: a second fault next to a first shows once the first is fixed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/rig/tools.sh
. "$here/tools.sh"

GRAFANA_SCHEMA_VERSION=13.2.3
TYPESCRIPT_VERSION=5.9.3

schema_dir() { echo "$HAPPYSTREAMS_TOOLS/grafana-schema"; }

# The version of node_modules/$1 in the tools dir, or nothing.
package_version() {
  local manifest; manifest="$(schema_dir)/node_modules/$1/package.json"
  [ -f "$manifest" ] && node -p "require(process.argv[1]).version" "$manifest" 2>/dev/null
}

installed() {
  [ "$(package_version @grafana/schema || true)" = "$GRAFANA_SCHEMA_VERSION" ] &&
    [ "$(package_version typescript || true)" = "$TYPESCRIPT_VERSION" ] &&
    [ -x "$(schema_dir)/node_modules/.bin/tsc" ]
}

need_npm() {
  command -v npm >/dev/null && return
  if [ "$(id -u)" = 0 ]; then
    echo "installing nodejs and npm (apt)" >&2
    apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq nodejs npm >&2
  else
    echo "the Grafana schema check needs Node.js and npm: apt-get install -y nodejs npm" >&2
    exit 1
  fi
}

install() {
  local dir; dir=$(schema_dir)
  need_npm
  if installed; then
    echo "$dir"
    return
  fi
  local started=$SECONDS
  mkdir -p "$dir"
  cat >"$dir/package.json" <<EOF
{
  "name": "happystreams-grafana-schema",
  "private": true,
  "description": "tools for tests/rig/grafana_schema.sh",
  "dependencies": {
    "@grafana/schema": "$GRAFANA_SCHEMA_VERSION",
    "typescript": "$TYPESCRIPT_VERSION"
  }
}
EOF
  echo "installing @grafana/schema@$GRAFANA_SCHEMA_VERSION typescript@$TYPESCRIPT_VERSION into $dir" >&2
  (cd "$dir" && npm install --no-audit --no-fund --ignore-scripts --save-exact --loglevel=error >&2)
  installed || { echo "npm install did not leave the pinned versions in $dir/node_modules" >&2; exit 1; }
  echo "grafana schema installed in $((SECONDS - started)) s" >&2
  echo "$dir"
}

check() {
  local source=${1:-$here/../../deploy/grafana/dashboards}
  [ -d "$source" ] || { echo "no such directory: $source" >&2; exit 64; }
  local dir; dir=$(install)
  local files=("$source"/*.json)
  [ -e "${files[0]}" ] || { echo "no dashboards (*.json) in $source" >&2; exit 1; }

  # Inside the tools dir, so `@grafana/schema` resolves from its node_modules.
  work=$(mktemp -d "$dir/check.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  local file name
  declare -A origin=()
  for file in "${files[@]}"; do
    name=$(basename "$file" .json)
    node -e 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))' "$file" ||
      { echo "$file: not valid JSON" >&2; exit 1; }
    {
      printf 'import type { DashboardJson } from "./_dashboard"; export const d: DashboardJson = '
      cat "$file"
      printf '\n;\n'
    } >"$work/$name.ts"
    origin[$name]=$file
  done
  cat >"$work/_dashboard.ts" <<'EOF'
// Dashboard JSON as Grafana writes it, with each known panel type's options checked.
import type { Dashboard, DataQuery, FieldConfig, FieldConfigSource, Panel, RowPanel } from "@grafana/schema";
import type * as BarGauge from "@grafana/schema/dist/esm/raw/composable/bargauge/panelcfg/x/BarGaugePanelCfg_types.gen";
import type * as Stat from "@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen";
import type * as TimeSeries from "@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen";

// String enums become their string values; everything else as is.
type Json<T> = T extends string ? `${T}`
  : T extends readonly (infer U)[] ? Json<U>[]
  : T extends object ? { [K in keyof T]: Json<T[K]> }
  : T;

// A query of the Prometheus datasource (Grafana's PromQuery, which @grafana/schema lacks): each
// needs its PromQL in `expr` (the integration test runs every `targets[].expr`).
type PrometheusTarget = DataQuery & {
  expr: string;
  legendFormat?: string;
  instant?: boolean;
  range?: boolean;
  exemplar?: boolean;
  format?: "time_series" | "table" | "heatmap";
  interval?: string;
  intervalFactor?: number;
  editorMode?: "code" | "builder";
};

// A panel of plugin `Name`: Grafana fills in the options and custom settings left out.
type Typed<Name extends string, Options, Custom> = Omit<Panel, "type" | "options" | "fieldConfig" | "targets"> & {
  type: Name;
  targets?: PrometheusTarget[];
  options?: Partial<Options>;
  fieldConfig?: Omit<FieldConfigSource, "defaults"> & {
    defaults: Omit<FieldConfig, "custom"> & { custom?: Partial<Custom> };
  };
};

type KnownPanel =
  | Typed<"timeseries", TimeSeries.Options, TimeSeries.FieldConfig>
  | Typed<"stat", Stat.Options, Record<string, unknown>>
  | Typed<"bargauge", BarGauge.Options, Record<string, unknown>>;

export type DashboardJson = Json<Omit<Dashboard, "panels"> & { panels?: Array<KnownPanel | RowPanel> }>;
EOF
  cat >"$work/tsconfig.json" <<'EOF'
{
  "compilerOptions": {
    "strict": true,
    "noEmit": true,
    "target": "es2022",
    "module": "esnext",
    "moduleResolution": "bundler",
    "skipLibCheck": true,
    "types": []
  },
  "include": ["*.ts"]
}
EOF
  local output status=0
  output=$(cd "$work" && "$dir/node_modules/.bin/tsc" -p tsconfig.json --noEmit --strict --pretty false 2>&1) || status=$?
  if [ "$status" != 0 ]; then
    # "overview.ts(12,5): error TS2353: ..." -> "deploy/grafana/dashboards/overview.json:12:5: error ..."
    local line ts rest
    while IFS= read -r line; do
      if [[ $line =~ ^([A-Za-z0-9_.-]+)\.ts\(([0-9]+),([0-9]+)\):\ (.*)$ ]]; then
        ts=${BASH_REMATCH[1]}
        rest=${BASH_REMATCH[4]}
        echo "${origin[$ts]:-$ts.ts}:${BASH_REMATCH[2]}:${BASH_REMATCH[3]}: $rest"
      else
        echo "$line"
      fi
    done <<<"$output"
    echo "grafana schema check failed: ${#files[@]} dashboards in $source" >&2
    exit 1
  fi
  echo "grafana schema check passed: ${#files[@]} dashboards in $source (@grafana/schema $GRAFANA_SCHEMA_VERSION)"
}

case "${1:-}" in
  install) install ;;
  check) check "${2:-}" ;;
  *) sed -n '2,9p' "$0" >&2; exit 64 ;;
esac
