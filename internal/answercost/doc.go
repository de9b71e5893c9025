// Package answercost measures what one legal answer costs this process on its way out: the
// largest series answer the cell cap allows, from the engine's output through decoding, the query
// layer's series and Grafana's frames or the HTTP API's JSON. Its benchmark prints the figures
// docs/read-paths.md quotes and its test holds the peak heap of such an answer to a bound derived
// from the cap.
package answercost
