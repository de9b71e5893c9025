import { DataSourceInstanceSettings } from '@grafana/data';

import { DataSource, parseVariableQuery } from './datasource';
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
  const ds = new DataSource(settings, fakeTemplateSrv({ cluster: { current: 'east', options: ['east', 'west'] } }));
  const getResource = jest.spyOn(ds, 'getResource').mockResolvedValue(['node-1', 'node-2']);
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
    expect(getResource).toHaveBeenCalledWith('labels', { dim: 'node', cluster: 'east' });
    await ds.metricFindQuery('pool');
    expect(getResource).toHaveBeenLastCalledWith('labels', { dim: 'pool' });
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
    expect(getResource).toHaveBeenCalledWith('labels', { dim: 'rack', cluster: 'east' });
    expect(resp.data).toEqual([{ text: 'node-1' }, { text: 'node-2' }]);
  });
});
