import { adHocFilters, bareNumbers, conditionalAll, interpolate, sqlString, unglob } from './interpolate';
import { fakeTemplateSrv } from './testing';

const srv = fakeTemplateSrv({
  cluster: { current: 'east', options: ['east', 'west'] },
  nodes: { current: ['node-1', 'node-2'], options: ['node-1', 'node-2', 'node-3'] },
  pools: { current: '$__all', options: ['train', 'infer'] },
  evil: { current: "x' OR 1=1 --", options: [] },
  backslash: { current: "a\\' OR 1=1 --", options: [] },
  metric: { current: 'temp_gpu_c', options: [] },
  racks: { current: ['$__all'], options: ['r1', 'r2'], allValue: '.*' },
  by: { current: ['cluster', 'pool'], options: [] },
  empty: { current: '$__all', options: [] },
  none: { current: '', options: [] },
});

describe('interpolate', () => {
  it('fills variables into the builder fields, expanding multi-value ones into lists', () => {
    const q = interpolate(
      {
        refId: 'A',
        metric: '$metric',
        agg: 'max',
        groupBy: ['$by', 'node'],
        filters: [
          { dim: 'cluster', values: ['$cluster'] },
          { dim: 'node', values: ['${nodes}', 'node-9'] },
          { dim: 'pool', values: ['$pools'] },
        ],
      },
      srv
    );
    expect(q.metric).toBe('temp_gpu_c');
    expect(q.groupBy).toEqual(['cluster', 'pool', 'node']);
    // $pools is All: its filter keeps every row, so it is not sent at all.
    expect(q.filters).toEqual([
      { dim: 'cluster', values: ['east'] },
      { dim: 'node', values: ['node-1', 'node-2', 'node-9'] },
    ]);
  });

  it('quotes variables in raw SQL so that a value stays one string literal', () => {
    const q = interpolate(
      { refId: 'A', queryType: 'sql', rawSql: 'SELECT 1 WHERE node = $evil AND c = $backslash' },
      srv
    );
    expect(q.rawSql).toBe("SELECT 1 WHERE node = 'x\\' OR 1=1 --' AND c = 'a\\\\\\' OR 1=1 --'");
  });

  it('joins a multi-value variable in raw SQL as a list of literals', () => {
    const q = interpolate({ refId: 'A', queryType: 'sql', rawSql: 'SELECT 1 WHERE node IN ($nodes)' }, srv);
    expect(q.rawSql).toBe("SELECT 1 WHERE node IN ('node-1','node-2')");
  });

  it('drops a filter on a variable set to All, with a custom All value or not, however many options it has', () => {
    const fleet = fakeTemplateSrv({
      gpus: { current: '$__all', options: Array.from({ length: 600000 }, (_, i) => `GPU-${i}`) },
    });
    for (const [ref, s] of [
      ['$racks', srv],
      ['$pools', srv],
      ['${gpus}', fleet],
      ['[[gpus]]', fleet],
    ] as const) {
      const q = interpolate(
        { refId: 'A', metric: 'gpu_util', filters: [{ dim: 'rack', values: ['r9', ref] }, { dim: 'node', values: ['n1'] }] },
        s
      );
      expect(q.filters).toEqual([{ dim: 'node', values: ['n1'] }]);
    }
    // A repeated panel's scoped All too.
    const scoped = { nodes: { text: 'All', value: '$__all' } };
    expect(interpolate({ refId: 'A', metric: 'm', filters: [{ dim: 'node', values: ['$nodes'] }] }, srv, scoped).filters).toEqual(
      []
    );
  });

  it('sends a filter on a variable with no options as one with no values (no data, not an error)', () => {
    for (const ref of ['$empty', '$none']) {
      const q = interpolate({ refId: 'A', metric: 'gpu_util', filters: [{ dim: 'node', values: [ref] }] }, srv);
      expect(q.filters).toEqual([{ dim: 'node', values: [] }]);
    }
  });

  it("splits multi-value variables in Grafana's glob form", () => {
    const q = interpolate(
      {
        refId: 'A',
        metric: 'gpu_util',
        filters: [
          { dim: 'node', values: ['${nodes:glob}'] },
          { dim: 'rack', values: ['{r1,r2}', '{single}'] },
        ],
      },
      srv
    );
    expect(q.filters).toEqual([
      { dim: 'node', values: ['node-1', 'node-2'] },
      { dim: 'rack', values: ['r1', 'r2', '{single}'] },
    ]);
    expect(unglob('{a,b,c}')).toEqual(['a', 'b', 'c']);
    expect(unglob('plain')).toEqual(['plain']);
  });

  it('adds ad-hoc filters on dimensions to builder queries, not to raw SQL', () => {
    const adHoc = [
      { key: 'cluster', operator: '=', value: 'east' },
      { key: 'node', operator: '=|', value: 'n1', values: ['n1', 'n2'] },
      { key: 'rack', operator: '!=', value: 'r1' },
      { key: 'datacenter', operator: '=', value: 'x' },
    ];
    expect(adHocFilters(adHoc)).toEqual([
      { dim: 'cluster', values: ['east'] },
      { dim: 'node', values: ['n1', 'n2'] },
    ]);
    const q = interpolate({ refId: 'A', metric: 'gpu_util', filters: [{ dim: 'pool', values: ['p'] }] }, srv, {}, adHoc);
    expect(q.filters).toEqual([
      { dim: 'pool', values: ['p'] },
      { dim: 'cluster', values: ['east'] },
      { dim: 'node', values: ['n1', 'n2'] },
    ]);
    expect(interpolate({ refId: 'A', queryType: 'sql', rawSql: 'SELECT 1' }, srv, {}, adHoc).filters).toBeUndefined();
  });

  it('fills variables into the legend', () => {
    expect(interpolate({ refId: 'A', metric: 'gpu_util', alias: '{{node}} in $cluster' }, srv).alias).toBe(
      '{{node}} in east'
    );
  });

  it('keeps an injection attempt in a filter a value, and passes a filter value through unquoted', () => {
    const q = interpolate({ refId: 'A', metric: 'gpu_util', filters: [{ dim: 'node', values: ['$evil'] }] }, srv);
    // Filter values reach the backend as data and are bound as query parameters there.
    expect(q.filters).toEqual([{ dim: 'node', values: ["x' OR 1=1 --"] }]);
  });

  it("puts Grafana's numeric time and interval variables into raw SQL bare, user variables quoted", () => {
    const scoped = {
      __interval_ms: { text: '60000', value: 60000 },
      __from: { text: '1700000000000', value: 1700000000000 },
      __interval: { text: '1m', value: '1m' },
    };
    const q = interpolate(
      {
        refId: 'A',
        queryType: 'sql',
        rawSql: 'SELECT $__interval_ms / 1000, ${__from}, $__interval, $__fromTime, $__interval_s WHERE c = $cluster',
      },
      srv,
      scoped
    );
    expect(q.rawSql).toBe("SELECT 60000 / 1000, 1700000000000, '1m', $__fromTime, $__interval_s WHERE c = 'east'");
    expect(bareNumbers('$__from_x $__to', srv, { __to: { text: "1' OR 1=1", value: "1' OR 1=1" } })).toBe(
      '$__from_x $__to'
    );
  });

  it('uses scoped variables (repeated panels) before dashboard ones', () => {
    const q = interpolate(
      { refId: 'A', metric: 'gpu_util', filters: [{ dim: 'cluster', values: ['$cluster'] }] },
      srv,
      {
        cluster: { text: 'west', value: 'west' },
      }
    );
    expect(q.filters?.[0].values).toEqual(['west']);
  });
});

describe('conditionalAll', () => {
  it('drops the condition when the variable is All, keeps it otherwise', () => {
    expect(conditionalAll('WHERE $__conditionalAll(pool IN ($pools), $pools) AND x', srv)).toBe('WHERE 1=1 AND x');
    expect(conditionalAll('WHERE $__conditionalAll(node IN ($nodes), $nodes)', srv)).toBe('WHERE node IN ($nodes)');
    const q = interpolate(
      {
        refId: 'A',
        queryType: 'sql',
        rawSql: "SELECT 1 WHERE $__conditionalAll(node IN ($nodes, 'a,b'), ${nodes}) LIMIT 1",
      },
      srv
    );
    expect(q.rawSql).toBe("SELECT 1 WHERE node IN ('node-1','node-2', 'a,b') LIMIT 1");
  });

  it('leaves a malformed macro for the backend to report', () => {
    expect(conditionalAll('WHERE $__conditionalAll(no comma)', srv)).toBe('WHERE $__conditionalAll(no comma)');
  });
});

describe('sqlString', () => {
  it.each([
    ['plain', "'plain'"],
    ["it's", "'it\\'s'"],
    ['a\\b', "'a\\\\b'"],
  ])('%s', (v, want) => expect(sqlString(v)).toBe(want));
});
