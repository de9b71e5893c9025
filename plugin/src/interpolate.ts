import { ScopedVars } from '@grafana/data';
import { TemplateSrv } from '@grafana/runtime';

import { GpuQuery } from './types';

// A separator no label value contains, to carry a multi-value variable through replace().
const SEP = '\u001f';

/** sqlString quotes a value as a ClickHouse string literal: backslashes and quotes escaped. */
export function sqlString(v: string): string {
  return "'" + v.replace(/\\/g, '\\\\').replace(/'/g, "\\'") + "'";
}

/** sqlFormat is the template-variable format for raw SQL: every value a quoted literal, comma-joined. */
export function sqlFormat(value: string | string[]): string {
  return Array.isArray(value) ? value.map(sqlString).join(',') : sqlString(value);
}

function listFormat(value: string | string[]): string {
  return Array.isArray(value) ? value.join(SEP) : value;
}

/** values interpolates one user value that may hold a multi-value variable into the values it stands for. */
export function values(srv: TemplateSrv, v: string, scopedVars?: ScopedVars): string[] {
  const all = customAllOptions(srv, v, scopedVars);
  if (all) {
    return all;
  }
  return srv
    .replace(v, scopedVars, listFormat)
    .split(SEP)
    .filter((s) => s !== '');
}

/** refName is the variable a whole-value reference ($name, ${name}, ${name:fmt}, [[name]]) names. */
function refName(ref: string): string | undefined {
  const m = /^\$\{?(\w+)(?::\w+)?\}?$/.exec(ref.trim()) ?? /^\[\[(\w+)\]\]$/.exec(ref.trim());
  return m?.[1];
}

/**
 * customAllOptions: a variable set to All whose custom All value (such as ".*") Grafana inserts as
 * written, bypassing format functions, stands in a filter for every option it has; undefined for
 * anything else, which replace() handles.
 */
function customAllOptions(srv: TemplateSrv, ref: string, scopedVars?: ScopedVars): string[] | undefined {
  const name = refName(ref);
  if (!name || scopedVars?.[name]) {
    return undefined;
  }
  const variable = srv.getVariables().find((x) => x.name === name) as
    | { allValue?: string | null; current?: { value?: unknown }; options?: Array<{ value: string | string[] }> }
    | undefined;
  const cur = variable?.current?.value;
  const isAllSelected = cur === '$__all' || (Array.isArray(cur) && cur.includes('$__all'));
  if (!variable?.allValue || !isAllSelected || !Array.isArray(variable.options)) {
    return undefined;
  }
  return variable.options.flatMap((o) => o.value).filter((v) => v !== '$__all' && v !== '');
}

/** isAll reports whether the variable a reference names is set to All or to nothing. */
function isAll(srv: TemplateSrv, ref: string, scopedVars?: ScopedVars): boolean {
  const name = refName(ref);
  if (!name) {
    return ref.trim() === '' || ref.trim() === "''";
  }
  if (scopedVars?.[name]) {
    const v = scopedVars[name]?.value;
    return v === '$__all' || (Array.isArray(v) && (v.length === 0 || v.includes('$__all'))) || v === '';
  }
  const variable = srv.getVariables().find((x) => x.name === name);
  if (!variable || !('current' in variable) || !variable.current) {
    return false;
  }
  const cur = variable.current.value;
  return cur === '$__all' || cur === '' || (Array.isArray(cur) && (cur.length === 0 || cur.includes('$__all')));
}

/**
 * conditionalAll resolves $__conditionalAll(condition, $var) in the browser, where the variable's
 * selection is known: All (or nothing) becomes 1=1, anything else the condition, whose variables
 * are then interpolated like the rest of the statement. (Interpolated first, a multi-value
 * selection would split into several macro arguments.)
 */
export function conditionalAll(sql: string, srv: TemplateSrv, scopedVars?: ScopedVars): string {
  const macro = '$__conditionalAll(';
  let out = '';
  let rest = sql;
  for (let i = rest.indexOf(macro); i >= 0; i = rest.indexOf(macro)) {
    out += rest.slice(0, i);
    const body = rest.slice(i + macro.length);
    let depth = 0;
    let quote = '';
    let comma = -1;
    let end = -1;
    for (let j = 0; j < body.length && end < 0; j++) {
      const c = body[j];
      if (quote) {
        if (c === '\\') {
          j++;
        } else if (c === quote) {
          quote = '';
        }
      } else if (c === "'" || c === '"' || c === '`') {
        quote = c;
      } else if (c === '(') {
        depth++;
      } else if (c === ')') {
        if (depth === 0) {
          end = j;
        } else {
          depth--;
        }
      } else if (c === ',' && depth === 0) {
        comma = j;
      }
    }
    if (end < 0 || comma < 0) {
      // Malformed: leave it for the backend, which names the problem.
      out += rest.slice(i);
      return out;
    }
    const cond = body.slice(0, comma).trim();
    const ref = body.slice(comma + 1, end);
    out += isAll(srv, ref, scopedVars) ? '1=1' : cond;
    rest = body.slice(end + 1);
  }
  return out + rest;
}

// Grafana's own time-range and interval variables in their numeric forms. User variables cannot
// start with "__", so these are set by the dashboard, never typed by whoever opens it.
const NUMERIC_BUILTINS =
  /\$__(?:from|to|interval_ms|range_s|range_ms)\b|\$\{__(?:from|to|interval_ms|range_s|range_ms)\}/g;

/**
 * bareNumbers puts Grafana's numeric built-ins ($__from, $__to in epoch ms, $__interval_ms,
 * $__range_s, $__range_ms) into raw SQL unquoted, so that arithmetic on them works; whatever else
 * (a formatted ${__from:date}, $__interval's "1m", any user variable) is left for the quoting pass.
 */
export function bareNumbers(sql: string, srv: TemplateSrv, scopedVars?: ScopedVars): string {
  return sql.replace(NUMERIC_BUILTINS, (ref) => {
    const v = srv.replace(ref, scopedVars);
    return /^\d+$/.test(v) ? v : ref;
  });
}

/** interpolate fills template variables into every user-controlled field of a query. */
export function interpolate(q: GpuQuery, srv: TemplateSrv, scopedVars?: ScopedVars): GpuQuery {
  const one = (v?: string) => (v === undefined ? v : srv.replace(v, scopedVars));
  return {
    ...q,
    metric: one(q.metric),
    agg: one(q.agg),
    groupBy: q.groupBy?.flatMap((g) => values(srv, g, scopedVars)),
    filters: q.filters?.map((f) => ({
      dim: srv.replace(f.dim, scopedVars),
      values: f.values.flatMap((v) => values(srv, v, scopedVars)),
    })),
    rawSql:
      q.rawSql === undefined
        ? undefined
        : srv.replace(bareNumbers(conditionalAll(q.rawSql, srv, scopedVars), srv, scopedVars), scopedVars, sqlFormat),
  };
}
