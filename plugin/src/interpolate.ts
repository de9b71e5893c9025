import { AdHocVariableFilter, ScopedVars } from '@grafana/data';
import { TemplateSrv } from '@grafana/runtime';

import { DIMS, Filter, GpuQuery } from './types';

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

// Grafana's glob form of several values, {a,b}: what replace() gives for a multi-value variable
// without a format function, and for ${var:glob}.
const GLOB = /^\{([^{}]*,[^{}]*)\}$/;

/** unglob splits a value in Grafana's glob form, {a,b}, into its values; anything else is one value. */
export function unglob(v: string): string[] {
  const m = GLOB.exec(v);
  return m ? m[1].split(',') : [v];
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
    .flatMap(unglob)
    .filter((s) => s !== '');
}

/**
 * selectsAll reports whether a filter value names a variable set to All that has options: a
 * filter holding it keeps every row, so it is dropped rather than sent as every option (at
 * 600,000 GPUs a list the engine refuses, and one the labels resource caps at 10,000 anyway). A
 * variable with no options at all stands for no values, and its filter for no rows.
 */
function selectsAll(srv: TemplateSrv, ref: string, scopedVars?: ScopedVars): boolean {
  const name = refName(ref);
  if (!name) {
    return false;
  }
  const isAllValue = (v: unknown) => v === '$__all' || (Array.isArray(v) && v.includes('$__all'));
  if (scopedVars?.[name]) {
    return isAllValue(scopedVars[name]?.value);
  }
  const variable = srv.getVariables().find((x) => x.name === name) as
    | { current?: { value?: unknown }; options?: Array<{ value: string | string[] }> }
    | undefined;
  if (!variable || !isAllValue(variable.current?.value)) {
    return false;
  }
  // Where the options are not known, All is taken to have some.
  return !Array.isArray(variable.options) || variable.options.some((o) => !isAllValue(o.value) && o.value !== '');
}

/**
 * filterValues interpolates a filter: undefined when it keeps every row (a value is a variable set
 * to All), otherwise its values, none when its variables have none (which the backend answers with
 * no data).
 */
export function filterValues(srv: TemplateSrv, f: Filter, scopedVars?: ScopedVars): Filter | undefined {
  if (f.values.some((v) => selectsAll(srv, v, scopedVars))) {
    return undefined;
  }
  return { dim: srv.replace(f.dim, scopedVars), values: f.values.flatMap((v) => values(srv, v, scopedVars)) };
}

/**
 * adHocFilters are a dashboard's ad-hoc filters on dimensions as builder filters: "=" keeps one
 * value, "=|" several. Other operators, and keys that are not dimensions, are not applied (the
 * query layer filters by inclusion only).
 */
export function adHocFilters(filters: AdHocVariableFilter[] | undefined): Filter[] {
  return (filters ?? []).flatMap((f) => {
    if (!DIMS.includes(f.key)) {
      return [];
    }
    if (f.operator === '=') {
      return [{ dim: f.key, values: [f.value] }];
    }
    if (f.operator === '=|') {
      return [{ dim: f.key, values: f.values ?? unglob(f.value) }];
    }
    return [];
  });
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

/**
 * interpolate fills template variables into every user-controlled field of a query, and adds the
 * dashboard's ad-hoc filters to a builder query.
 */
export function interpolate(
  q: GpuQuery,
  srv: TemplateSrv,
  scopedVars?: ScopedVars,
  adHoc?: AdHocVariableFilter[]
): GpuQuery {
  const one = (v?: string) => (v === undefined ? v : srv.replace(v, scopedVars));
  let filters = q.filters?.flatMap((f) => filterValues(srv, f, scopedVars) ?? []);
  // Ad-hoc filters narrow panel queries; raw SQL is the user's own, and events carry fewer dimensions.
  const extra = q.queryType === 'sql' || q.queryType === 'annotations' ? [] : adHocFilters(adHoc);
  if (extra.length > 0) {
    filters = [...(filters ?? []), ...extra];
  }
  return {
    ...q,
    metric: one(q.metric),
    agg: one(q.agg),
    alias: one(q.alias),
    groupBy: q.groupBy?.flatMap((g) => values(srv, g, scopedVars)),
    filters,
    rawSql:
      q.rawSql === undefined
        ? undefined
        : srv.replace(bareNumbers(conditionalAll(q.rawSql, srv, scopedVars), srv, scopedVars), scopedVars, sqlFormat),
  };
}
