# Every test file shares one local cluster of two workers, started on first use and stopped when
# the tests end. Test clusters keep their state under DOCKERPARALLEL_HOME (a fresh folder here).
if (!nzchar(Sys.getenv("DOCKERPARALLEL_HOME"))) Sys.setenv(DOCKERPARALLEL_HOME = tempfile("dockerparallel-home-"))

testCluster <- local({
  cluster <- NULL
  function() {
    if (is.null(cluster)) {
      cluster <<- makeDockerCluster(workerNumber = 2, jobQueueName = paste0("rtests-", Sys.getpid()), verbose = 0)
      # stopClusterOnExit (the default) stops it when R exits.
      cluster$startCluster()
    }
    if (requireNamespace("BiocParallel", quietly = TRUE)) BiocParallel::register(DockerParam(cluster), default = TRUE)
    cluster
  }
})

# Waits for a condition, failing the test after `seconds`.
waitFor <- function(what, condition, seconds = 60) {
  deadline <- Sys.time() + seconds
  while (!isTRUE(condition())) {
    if (Sys.time() > deadline) stop("timed out after ", seconds, " s waiting for ", what)
    Sys.sleep(0.05)
  }
  invisible(TRUE)
}

# The pids of a local cluster's worker processes.
workerPids <- function(cluster) {
  processes <- system2("ps", c("-eo", "pid=,args="), stdout = TRUE)
  pattern <- paste0("dockerparallel worker --name ", cluster$jobQueueName, "-worker-")
  mine <- processes[grepl(pattern, processes, fixed = TRUE) & !grepl("ps -eo", processes, fixed = TRUE)]
  as.integer(sub("^\\s*([0-9]+).*$", "\\1", mine))
}
