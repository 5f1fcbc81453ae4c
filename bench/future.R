# R's future, multisession: one scenario as JSON.
#   Rscript bench/future.R SCENARIO TASKS WORKERS MS
suppressMessages(library(future))
args <- commandArgs(trailingOnly = TRUE)
scenario <- args[1]; tasks <- as.integer(args[2]); workers <- as.integer(args[3]); ms <- as.integer(args[4])
plan(multisession, workers = workers)
noop <- function(x) x
spin <- function(ms) { end <- proc.time()[["elapsed"]] + ms / 1000; n <- 0; while (proc.time()[["elapsed"]] < end) n <- n + 1; n %% 2 }
invisible(value(lapply(seq_len(workers), function(i) future(noop(i)))))
now <- function() as.numeric(Sys.time())
if (scenario == "tiny") {
  start <- now()
  out <- value(lapply(seq_len(tasks), function(i) future(noop(i))))
  elapsed <- now() - start
  cat(sprintf('{"seconds": %f, "tasks": %d, "tasks_per_second": %f}\n', elapsed, tasks, tasks / elapsed))
} else if (scenario == "roundtrip") {
  latencies <- numeric(0)
  for (i in seq_len(tasks + 20)) {
    start <- now(); value(future(noop(i)))
    if (i > 20) latencies <- c(latencies, (now() - start) * 1e6)
  }
  latencies <- sort(latencies)
  cat(sprintf('{"median_us": %f, "p99_us": %f}\n', median(latencies), latencies[max(1, floor(length(latencies) * 0.99))]))
} else if (scenario == "efficiency") {
  start <- now()
  invisible(value(lapply(seq_len(tasks), function(i) future(spin(ms)))))
  elapsed <- now() - start
  ideal <- tasks * ms / 1000 / workers
  cat(sprintf('{"seconds": %f, "ideal_seconds": %f, "efficiency": %f}\n', elapsed, ideal, ideal / elapsed))
}
