import { VariableQuery } from './types';

/** parseVariableQuery reads the text form of a variable query: "dim" or "dim?cluster=value". */
export function parseVariableQuery(s: string): Pick<VariableQuery, 'dim' | 'cluster'> {
  const [dim, qs] = s.trim().split('?', 2);
  const out: Pick<VariableQuery, 'dim' | 'cluster'> = { dim: dim.trim() };
  if (qs) {
    const cluster = new URLSearchParams(qs).get('cluster');
    if (cluster) {
      out.cluster = cluster;
    }
  }
  return out;
}
