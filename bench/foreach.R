# R loops on two workers, one system at a time, as JSON:
#   Rscript bench/foreach.R SYSTEM SCENARIO TASKS WORKERS MS
# SYSTEM: dockerparallel (the R package's foreach backend on a local cluster, R workers kept
# alive), doparallel (doParallel on a PSOCK cluster of this machine) or future (future.apply's
# future_lapply on a multisession plan). SCENARIO: tiny (each task returns its input) or cpu
# (each task spins MS ms of CPU). Starting the workers is not timed; one warm-up loop runs first.
args <- commandArgs(trailingOnly = TRUE)
system <- args[1]; scenario <- args[2]; tasks <- as.integer(args[3]); workers <- as.integer(args[4]); ms <- as.integer(args[5])
suppressMessages(library(foreach))
spin <- function(ms) { end <- proc.time()[["elapsed"]] + ms / 1000; n <- 0; while (proc.time()[["elapsed"]] < end) n <- n + 1; n %% 2 }
work <- if (scenario == "tiny") function(i) i else function(i) spin(ms)
stopIt <- function() NULL
if (system == "dockerparallel") {
  suppressMessages(library(dockerparallel))
  cluster <- makeDockerCluster(workerNumber = workers, jobQueueName = paste0("bench-r-", Sys.getpid()), serverPort = 0, verbose = 0)
  cluster$startCluster()
  stopIt <- function() cluster$stopCluster()
  loop <- function(n) foreach(i = seq_len(n), .combine = c, .export = c("work", "spin", "ms")) %dopar% work(i)
} else if (system == "doparallel") {
  suppressMessages(library(doParallel))
  nodes <- parallel::makePSOCKcluster(workers)
  registerDoParallel(nodes)
  stopIt <- function() parallel::stopCluster(nodes)
  # doParallel does not look in the global environment for what the loop needs.
  loop <- function(n) foreach(i = seq_len(n), .combine = c, .export = c("work", "spin", "ms")) %dopar% work(i)
} else if (system == "future") {
  suppressMessages(library(future.apply))
  plan(multisession, workers = workers)
  loop <- function(n) unlist(future_lapply(seq_len(n), work))
}
invisible(loop(workers * 2))
start <- proc.time()[["elapsed"]]
out <- loop(tasks)
elapsed <- proc.time()[["elapsed"]] - start
stopIt()
stopifnot(length(out) == tasks)
ideal <- if (scenario == "cpu") tasks * ms / 1000 / workers else NA
cat(sprintf('{"seconds": %f, "tasks_per_second": %f, "efficiency": %s}\n', elapsed, tasks / elapsed,
            if (is.na(ideal)) "null" else sprintf("%f", ideal / elapsed)))
