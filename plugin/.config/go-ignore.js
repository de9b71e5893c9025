// node_modules sits inside the Go module (plugin/ holds the Go backend too), and some npm packages
// ship Go files: a go.mod there makes it a module of its own, which `go test ./...`, `go vet ./...`
// and `go mod tidy` then leave alone. Run by npm after every install.
const fs = require('fs');
const path = require('path');

fs.writeFileSync(path.join(__dirname, '..', 'node_modules', 'go.mod'), 'module ignore.invalid/node_modules\n');
