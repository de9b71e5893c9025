// Package schema is the one home of gpufleet's ClickHouse schema as code sees it: the names of its
// tables, views and columns, the rollup levels and which column holds which aggregate. The
// migrations themselves are numbered SQL files in migrations/, applied by migrate/.
package schema
