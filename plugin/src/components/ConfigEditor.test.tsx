import { fireEvent, render, screen } from '@testing-library/react';
import { DataSourceSettings } from '@grafana/data';

import { GpuOptions, GpuSecureOptions } from '../types';
import { ConfigEditor } from './ConfigEditor';

function settings(jsonData: GpuOptions = {}, secureJsonFields: Record<string, boolean> = {}) {
  return {
    id: 1,
    uid: 'x',
    orgId: 1,
    name: 'gpufleet',
    type: 'gpufleet-fleet-datasource',
    typeName: 'gpufleet',
    typeLogoUrl: '',
    access: 'proxy',
    url: '',
    user: '',
    basicAuth: false,
    basicAuthUser: '',
    isDefault: false,
    readOnly: false,
    withCredentials: false,
    jsonData,
    secureJsonFields,
    secureJsonData: {},
  } as DataSourceSettings<GpuOptions, GpuSecureOptions>;
}

describe('ConfigEditor', () => {
  it('writes the address and database into jsonData', () => {
    const onOptionsChange = jest.fn();
    render(<ConfigEditor options={settings()} onOptionsChange={onOptionsChange} />);
    fireEvent.change(screen.getByPlaceholderText('clickhouse:9000'), { target: { value: 'ch-1:9440' } });
    expect(onOptionsChange).toHaveBeenLastCalledWith(expect.objectContaining({ jsonData: { address: 'ch-1:9440' } }));
    fireEvent.change(screen.getByPlaceholderText('gpufleet'), { target: { value: 'fleet' } });
    expect(onOptionsChange).toHaveBeenLastCalledWith(expect.objectContaining({ jsonData: { database: 'fleet' } }));
  });

  it('keeps the password in secureJsonData, and a saved one only as configured', () => {
    const onOptionsChange = jest.fn();
    const { unmount } = render(<ConfigEditor options={settings()} onOptionsChange={onOptionsChange} />);
    fireEvent.change(document.getElementById('gpufleet-password')!, { target: { value: 's3cret' } });
    const sent = onOptionsChange.mock.lastCall[0];
    expect(sent.secureJsonData).toEqual({ password: 's3cret' });
    expect(sent.jsonData).toEqual({});
    unmount();
    render(<ConfigEditor options={settings({}, { password: true })} onOptionsChange={onOptionsChange} />);
    expect(screen.getByDisplayValue('configured')).toBeInTheDocument();
  });

  it('says that a chDB directory is for one process only, and that it excludes an address', () => {
    const { rerender } = render(<ConfigEditor options={settings()} onOptionsChange={jest.fn()} />);
    expect(screen.getByText(/must never be opened by two processes at once/)).toBeInTheDocument();
    expect(screen.queryByText('Address and chDB directory are exclusive')).not.toBeInTheDocument();
    rerender(
      <ConfigEditor options={settings({ address: 'ch:9000', chdbPath: '/data' })} onOptionsChange={jest.fn()} />
    );
    expect(screen.getByText('Address and chDB directory are exclusive')).toBeInTheDocument();
  });

  it('asks for certificates only when a TLS option needs them', () => {
    const onOptionsChange = jest.fn();
    const { rerender } = render(
      <ConfigEditor options={settings({ address: 'ch:9440' })} onOptionsChange={onOptionsChange} />
    );
    expect(screen.queryByText('Client certificate')).not.toBeInTheDocument();
    fireEvent.click(document.getElementById('gpufleet-client-auth')!);
    expect(onOptionsChange).toHaveBeenLastCalledWith(
      expect.objectContaining({ jsonData: { address: 'ch:9440', tlsAuth: true } })
    );
    rerender(
      <ConfigEditor options={settings({ address: 'ch:9440', tlsAuth: true })} onOptionsChange={onOptionsChange} />
    );
    expect(screen.getByText('Client certificate')).toBeInTheDocument();
    expect(screen.getByText('Client key')).toBeInTheDocument();
  });
});
