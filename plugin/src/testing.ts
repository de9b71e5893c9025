import { ScopedVars, TypedVariableModel } from '@grafana/data';
import { TemplateSrv } from '@grafana/runtime';
import userEvent, { PointerEventsCheckLevel } from '@testing-library/user-event';

/**
 * user is userEvent for tests where the speed of a person is irrelevant: no delay between key
 * strokes (a timer per key, which a loaded machine stretches), and no pointer-events check, which
 * reads the computed style of the target and every ancestor at each pointer action and means
 * nothing here, where no stylesheet reaches the document (.config/jest-setup.js).
 */
export function user() {
  return userEvent.setup({ delay: null, pointerEventsCheck: PointerEventsCheckLevel.Never });
}

/** A variable as the tests set it: its current value, "$__all" for All, and every value it could take. */
export interface TestVariable {
  current: string | string[];
  options: string[];
  /** A custom All value: inserted as written when All is selected, as Grafana's scenes do. */
  allValue?: string;
}

/**
 * fakeTemplateSrv interpolates $name, ${name} and ${name:format} the way Grafana's TemplateSrv does
 * for what the datasource uses: a format function gets the value (an array for several values, and
 * for All every option); without one, or with ${name:glob}, several values take Grafana's default
 * glob form {a,b}, and ${name:csv} joins them with commas.
 */
export function fakeTemplateSrv(vars: Record<string, TestVariable>): TemplateSrv {
  const valueOf = (name: string, scoped?: ScopedVars): string | string[] | { custom: string } | undefined => {
    if (scoped?.[name]) {
      return scoped[name]?.value as string | string[];
    }
    const v = vars[name];
    if (!v) {
      return undefined;
    }
    const cur = v.current;
    if (cur === '$__all' || (Array.isArray(cur) && cur.includes('$__all'))) {
      return v.allValue ? { custom: v.allValue } : v.options;
    }
    return cur;
  };
  // Built once: the variables do not change, and one may have 600,000 options.
  let models: TypedVariableModel[] | undefined;
  return {
    getVariables: () =>
      (models ??= Object.entries(vars).map(
        ([name, v]) =>
          ({
            name,
            type: 'custom',
            current: { value: v.current, text: v.current },
            options: [{ value: '$__all', text: 'All' }, ...v.options.map((o) => ({ value: o, text: o }))],
            allValue: v.allValue,
          }) as unknown as TypedVariableModel
      )),
    replace: (target?: string, scopedVars?: ScopedVars, format?: string | Function) =>
      (target ?? '').replace(/\$\{(\w+)(?::(\w+))?\}|\$(\w+)/g, (m, a, explicit, b) => {
        const value = valueOf(a ?? b, scopedVars);
        if (value === undefined) {
          return m;
        }
        if (typeof value === 'object' && 'custom' in value) {
          return value.custom;
        }
        // As in Grafana, a format the reference names wins over the caller's.
        if (explicit === 'csv') {
          return Array.isArray(value) ? value.join(',') : value;
        }
        if (typeof format === 'function' && !explicit) {
          return format(value);
        }
        return Array.isArray(value) && value.length > 1 ? `{${value.join(',')}}` : String(value);
      }),
    containsTemplate: (t?: string) => /\$\w+|\$\{\w+/.test(t ?? ''),
    updateTimeRange: () => {},
  } as TemplateSrv;
}
