import React, { ChangeEvent } from 'react';
import { DataSourcePluginOptionsEditorProps } from '@grafana/data';
import { Alert, Field, FieldSet, Input, InlineField, InlineSwitch, SecretInput, SecretTextArea } from '@grafana/ui';

import { GpuOptions, GpuSecureOptions } from '../types';

type Props = DataSourcePluginOptionsEditorProps<GpuOptions, GpuSecureOptions>;

/** ConfigEditor edits where the datasource reads from: a ClickHouse server (with TLS) or a chDB directory. */
export function ConfigEditor({ options, onOptionsChange }: Props) {
  const { jsonData, secureJsonFields } = options;
  const secure = options.secureJsonData ?? {};

  const setJson = (patch: Partial<GpuOptions>) => onOptionsChange({ ...options, jsonData: { ...jsonData, ...patch } });
  const text = (key: keyof GpuOptions) => (e: ChangeEvent<HTMLInputElement>) => setJson({ [key]: e.target.value });
  const flag = (key: keyof GpuOptions) => (e: React.FormEvent<HTMLInputElement>) =>
    setJson({ [key]: e.currentTarget.checked });
  const setSecret = (key: keyof GpuSecureOptions) => (e: React.FormEvent<HTMLInputElement | HTMLTextAreaElement>) =>
    onOptionsChange({ ...options, secureJsonData: { ...secure, [key]: e.currentTarget.value } });
  const resetSecret = (key: keyof GpuSecureOptions) => () =>
    onOptionsChange({
      ...options,
      secureJsonFields: { ...secureJsonFields, [key]: false },
      secureJsonData: { ...secure, [key]: '' },
    });

  const both = Boolean(jsonData.address) && Boolean(jsonData.chdbPath);
  const tls = Boolean(jsonData.secure || jsonData.tlsSkipVerify || jsonData.tlsAuth || jsonData.tlsAuthWithCACert);

  return (
    <>
      {both && (
        <Alert severity="error" title="Address and chDB directory are exclusive">
          Set a ClickHouse address or a chDB directory, not both.
        </Alert>
      )}
      <FieldSet label="ClickHouse server">
        <Field label="Address" description="host:port of the native protocol: 9000, or 9440 with TLS">
          <Input
            id="gpufleet-address"
            value={jsonData.address ?? ''}
            placeholder="clickhouse:9000"
            onChange={text('address')}
            width={40}
          />
        </Field>
        <Field label="Database" description="where gpufleet migrate created the schema">
          <Input
            id="gpufleet-database"
            value={jsonData.database ?? ''}
            placeholder="gpufleet"
            onChange={text('database')}
            width={40}
          />
        </Field>
        <Field label="Username" description="a read-only user is enough: the plugin only reads">
          <Input
            id="gpufleet-username"
            value={jsonData.username ?? ''}
            placeholder="default"
            onChange={text('username')}
            width={40}
          />
        </Field>
        <Field label="Password">
          <SecretInput
            id="gpufleet-password"
            isConfigured={Boolean(secureJsonFields?.password)}
            value={secure.password ?? ''}
            onChange={setSecret('password')}
            onReset={resetSecret('password')}
            width={40}
          />
        </Field>
      </FieldSet>

      <FieldSet label="TLS">
        <InlineField label="Secure connection" labelWidth={26} tooltip="TLS with the system's trusted CAs">
          <InlineSwitch id="gpufleet-secure" value={Boolean(jsonData.secure)} onChange={flag('secure')} />
        </InlineField>
        <InlineField
          label="Skip TLS verify"
          labelWidth={26}
          tooltip="do not check the server's certificate: tests only"
        >
          <InlineSwitch
            id="gpufleet-skip-verify"
            value={Boolean(jsonData.tlsSkipVerify)}
            onChange={flag('tlsSkipVerify')}
          />
        </InlineField>
        <InlineField label="With CA certificate" labelWidth={26} tooltip="verify the server against this CA">
          <InlineSwitch
            id="gpufleet-ca"
            value={Boolean(jsonData.tlsAuthWithCACert)}
            onChange={flag('tlsAuthWithCACert')}
          />
        </InlineField>
        <InlineField label="TLS client authentication" labelWidth={26} tooltip="present a client certificate">
          <InlineSwitch id="gpufleet-client-auth" value={Boolean(jsonData.tlsAuth)} onChange={flag('tlsAuth')} />
        </InlineField>
        {jsonData.tlsAuthWithCACert && (
          <Field label="CA certificate" description="PEM, BEGIN CERTIFICATE … END CERTIFICATE">
            <SecretTextArea
              isConfigured={Boolean(secureJsonFields?.tlsCACert)}
              value={secure.tlsCACert ?? ''}
              onChange={setSecret('tlsCACert')}
              onReset={resetSecret('tlsCACert')}
              cols={60}
              rows={6}
            />
          </Field>
        )}
        {jsonData.tlsAuth && (
          <>
            <Field label="Client certificate" description="PEM">
              <SecretTextArea
                isConfigured={Boolean(secureJsonFields?.tlsClientCert)}
                value={secure.tlsClientCert ?? ''}
                onChange={setSecret('tlsClientCert')}
                onReset={resetSecret('tlsClientCert')}
                cols={60}
                rows={6}
              />
            </Field>
            <Field label="Client key" description="PEM">
              <SecretTextArea
                isConfigured={Boolean(secureJsonFields?.tlsClientKey)}
                value={secure.tlsClientKey ?? ''}
                onChange={setSecret('tlsClientKey')}
                onReset={resetSecret('tlsClientKey')}
                cols={60}
                rows={6}
              />
            </Field>
          </>
        )}
        {tls && !jsonData.address && <Alert severity="warning" title="TLS applies to a ClickHouse address" />}
      </FieldSet>

      <FieldSet label="Embedded chDB (tests and single-process development)">
        <Alert severity="info" title="One process per data directory">
          A ClickHouse data directory must never be opened by two processes at once. Use a chDB directory only for tests
          and single-process development, with nothing else (no gpufleet ingest, no other Grafana) holding it: the
          backend refuses a directory that is in use.
        </Alert>
        <Field label="chDB directory" description="a data directory gpufleet filled; leave the address empty">
          <Input
            id="gpufleet-chdb"
            value={jsonData.chdbPath ?? ''}
            placeholder="/var/lib/gpufleet"
            onChange={text('chdbPath')}
            width={40}
          />
        </Field>
      </FieldSet>
    </>
  );
}
