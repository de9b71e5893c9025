package migrate

// RecordTableSQL is recordTableSQL, for the sharded form's test.
var RecordTableSQL = recordTableSQL
