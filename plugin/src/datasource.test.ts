import { DataSourceInstanceSettings } from '@grafana/data';

import { DataSource, parseVariableQuery, queryText } from './datasource';
import { fakeTemplateSrv } from './testing';
import { GpuOptions } from './types';

const settings = {
  id: 1,
  uid: 'gpufleet',
  type: 'gpufleet-fleet-datasource',
  name: 'gpufleet',
  access: 'proxy',
  jsonData: {},
  meta: {},
  readOnly: false,
} as unknown as DataSourceInstanceSettings<GpuOptions>;

function newDS() {
  const ds = new DataSource(
    settings,
    fakeTemplateSrv({
      cluster: { current: 'east', options: ['east', 'west'] },
      clusters: { current: ['east', 'west'], options: ['east', 'west', 'north'] },
      anyCluster: { current: '$__all', options: ['east', 'west'] },
      noCluster: { current: '', options: [] },
      nodes: { current: '$__all', options: ['node-1', 'node-2'] },
    })
  );
  const getResource = jest
    .spyOn(ds, 'getResource')
    .mockResolvedValue({ values: ['node-1', 'node-2'], truncated: false });
  const postResource = jest.spyOn(ds, 'postResource').mockResolvedValue({ sql: 'SELECT 1' });
  return { ds, getResource, postResource };
}

describe('DataSource', () => {
  it('lists a dimension for a template variable through the labels resource', async () => {
    const { ds, getResource } = newDS();
    await expect(ds.metricFindQuery({ dim: 'node', cluster: '$cluster' })).resolves.toEqual([
      { text: 'node-1' },
      { text: 'node-2' },
    ]);
    expect(getResource).toHaveBeenCalledWith('labels', { dim: 'node', cluster: ['east'] });
    await ds.metricFindQuery('pool');
    expect(getResource).toHaveBeenLastCalledWith('labels', { dim: 'pool' });
  });

  it('narrows a variable query to each of a multi-value cluster’s clusters, and All to none', async () => {
    const { ds, getResource } = newDS();
    await ds.metricFindQuery({ dim: 'node', cluster: '$clusters' });
    expect(getResource).toHaveBeenLastCalledWith('labels', { dim: 'node', cluster: ['east', 'west'] });
    await ds.metricFindQuery('node?cluster=$anyCluster');
    expect(getResource).toHaveBeenLastCalledWith('labels', { dim: 'node' });
    // In a cluster variable with no options: no values, and nothing asked.
    getResource.mockClear();
    await expect(ds.metricFindQuery({ dim: 'node', cluster: '$noCluster' })).resolves.toEqual([]);
    expect(getResource).not.toHaveBeenCalled();
  });

  it('reads the labels resource’s truncation flag, and the bare list of an older backend', async () => {
    const { ds, getResource } = newDS();
    getResource.mockResolvedValueOnce({ values: ['a'], truncated: true });
    await expect(ds.labels('gpu')).resolves.toEqual({ values: ['a'], truncated: true });
    getResource.mockResolvedValueOnce(['a', 'b']);
    await expect(ds.labels('gpu')).resolves.toEqual({ values: ['a', 'b'], truncated: false });
  });

  it('interpolates the queries Explore and new alert rules take from a dashboard, as a panel would', () => {
    const { ds } = newDS();
    const [q] = ds.interpolateVariablesInQueries(
      [
        {
          refId: 'A',
          metric: 'gpu_util',
          filters: [
            { dim: 'cluster', values: ['$cluster'] },
            { dim: 'node', values: ['$nodes'] },
          ],
        },
      ],
      {},
      [{ key: 'rack', operator: '=', value: 'r7' }]
    );
    expect(q.filters).toEqual([
      { dim: 'cluster', values: ['east'] },
      { dim: 'rack', values: ['r7'] },
    ]);
    expect(q.datasource).toEqual({ type: 'gpufleet-fleet-datasource', uid: 'gpufleet' });
  });

  it('offers the dimensions as ad-hoc filter keys and their values, in the clusters already chosen', async () => {
    const { ds, getResource } = newDS();
    await expect(ds.getTagKeys()).resolves.toContainEqual({ text: 'node' });
    await expect(
      ds.getTagValues({ key: 'node', filters: [{ key: 'cluster', operator: '=', value: 'west' }] })
    ).resolves.toEqual([{ text: 'node-1' }, { text: 'node-2' }]);
    expect(getResource).toHaveBeenLastCalledWith('labels', { dim: 'node', cluster: ['west'] });
  });

  it('says in one line what a query asks, for query history', () => {
    const { ds } = newDS();
    expect(
      ds.getQueryDisplayText({
        refId: 'A',
        metric: 'gpu_util',
        agg: 'p99',
        groupBy: ['cluster'],
        filters: [
          { dim: 'node', values: ['a', 'b'] },
          { dim: 'pool', values: ['train'] },
        ],
      })
    ).toBe('p99 gpu_util by cluster where node in (a, b) and pool = train');
    expect(queryText({ refId: 'A', queryType: 'stat', metric: 'power_w', agg: 'sum' })).toBe('sum power_w over the range');
    expect(queryText({ refId: 'A', queryType: 'top', metric: 'temp_gpu_c', agg: 'max', limit: 5 })).toBe(
      'top 5 GPUs by max temp_gpu_c'
    );
    expect(queryText({ refId: 'A', queryType: 'sql', rawSql: 'SELECT 1\n  FROM t' })).toBe('SELECT 1 FROM t');
    expect(queryText({ refId: 'A', queryType: 'annotations', kinds: ['xid'] })).toBe('events xid');
    expect(queryText({ refId: 'A', queryType: 'drain', filters: [{ dim: 'cluster', values: ['east'] }] })).toBe(
      'GPUs to drain where cluster = east'
    );
    expect(queryText({ refId: 'A', queryType: 'health' })).toBe('GPUs by health state');
    expect(queryText({ refId: 'A', queryType: 'interruptions', within: 60 })).toBe(
      'jobs ended within 60 s of a fatal event, by cause'
    );
    expect(queryText({ refId: 'A', queryType: 'jobs', filters: [{ dim: 'job_id', values: ['j1', 'j2'] }] })).toBe(
      'usage by job where job_id in (j1, j2)'
    );
    expect(queryText({ refId: 'A', queryType: 'power', agg: 'max', filters: [{ dim: 'cluster', values: ['east'] }] })).toBe(
      'peak second of power by cluster where cluster = east'
    );
    expect(queryText({ refId: 'A', queryType: 'power' })).toBe('mean second of power by cluster');
  });

  it('runs annotation queries as GPU events', () => {
    const { ds } = newDS();
    const a = ds.annotations!.prepareAnnotation!({ name: 'events', enable: true, iconColor: 'red' } as never);
    expect(a.target).toEqual(expect.objectContaining({ queryType: 'annotations' }));
    expect(ds.filterQuery({ refId: 'A', queryType: 'annotations' })).toBe(true);
  });

  it('reads the text form of a variable query', () => {
    expect(parseVariableQuery('node?cluster=$cluster')).toEqual({ dim: 'node', cluster: '$cluster' });
    expect(parseVariableQuery(' rack ')).toEqual({ dim: 'rack' });
  });

  it('skips hidden queries and those with nothing to run', () => {
    const { ds } = newDS();
    expect(ds.filterQuery({ refId: 'A', metric: 'gpu_util' })).toBe(true);
    expect(ds.filterQuery({ refId: 'A', metric: 'gpu_util', hide: true })).toBe(false);
    expect(ds.filterQuery({ refId: 'A', queryType: 'sql', rawSql: '  ' })).toBe(false);
    expect(ds.filterQuery({ refId: 'A', queryType: 'sql', rawSql: 'SELECT 1' })).toBe(true);
    // The failure reports, the jobs table and the power query take no metric.
    for (const queryType of ['health', 'drain', 'interruptions', 'jobs', 'power'] as const) {
      expect(ds.filterQuery({ refId: 'A', queryType })).toBe(true);
      expect(ds.filterQuery({ refId: 'A', queryType, hide: true })).toBe(false);
    }
  });

  it('asks the backend to compile the interpolated query over the range', async () => {
    const { ds, postResource } = newDS();
    const range = { from: { valueOf: () => 1000 }, to: { valueOf: () => 61000 } } as never;
    await ds.compile(
      { refId: 'A', metric: 'gpu_util', filters: [{ dim: 'cluster', values: ['$cluster'] }] },
      range,
      15000,
      500
    );
    expect(postResource).toHaveBeenCalledWith(
      'compile',
      expect.objectContaining({
        metric: 'gpu_util',
        filters: [{ dim: 'cluster', values: ['east'] }],
        from: 1000,
        to: 61000,
        intervalMs: 15000,
        maxDataPoints: 500,
      })
    );
  });

  it('fetches the metric catalogue once, and again after a failure', async () => {
    const { ds, getResource } = newDS();
    getResource.mockRejectedValueOnce(new Error('down'));
    await expect(ds.metrics()).rejects.toThrow('down');
    getResource.mockResolvedValue([{ column: 'gpu_util' }]);
    await ds.metrics();
    await ds.metrics();
    expect(getResource).toHaveBeenCalledTimes(2);
  });
});

describe('GpuVariableSupport', () => {
  it('answers a variable query with the dimension’s values', async () => {
    const { ds, getResource } = newDS();
    const { lastValueFrom } = await import('rxjs');
    const resp = await lastValueFrom(
      (ds.variables as unknown as { query: (r: unknown) => import('rxjs').Observable<{ data: unknown[] }> }).query({
        targets: [{ refId: 'V', dim: 'rack', cluster: '$cluster' }],
        scopedVars: {},
      })
    );
    expect(getResource).toHaveBeenCalledWith('labels', { dim: 'rack', cluster: ['east'] });
    expect(resp.data).toEqual([{ text: 'node-1' }, { text: 'node-2' }]);
  });
});
