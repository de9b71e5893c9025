import { DataSourcePlugin } from '@grafana/data';

import { ConfigEditor } from './components/ConfigEditor';
import { QueryEditor } from './components/QueryEditor';
import { DataSource } from './datasource';
import { GpuOptions, GpuQuery, GpuSecureOptions } from './types';

export const plugin = new DataSourcePlugin<DataSource, GpuQuery, GpuOptions, GpuSecureOptions>(DataSource)
  .setConfigEditor(ConfigEditor)
  .setQueryEditor(QueryEditor);
