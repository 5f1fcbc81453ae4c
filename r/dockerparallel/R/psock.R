# Dial-back workers: R processes on the cluster's workers that connect back to this session and
# serve as an ordinary `parallel` cluster (parLapply, doParallel, future's cluster plan).

#' A `parallel` cluster of R processes on the DockerParallel cluster's workers.
#'
#' Runs `workers` R processes as one job on the cluster's workers; each connects back to this R
#' session, as `parallel::makePSOCKcluster()`'s workers do. The result is a `SOCKcluster` that
#' `parallel::parLapply()`, `doParallel::registerDoParallel(cl)` and
#' `future::plan(future::cluster, workers = cl)` use unchanged. `parallel::stopCluster(cl)` ends
#' the processes, and with them the job. Each process holds a worker slot while it lives.
#' @param cluster A started cluster.
#' @param workers How many R processes (default: the cluster's slots).
#' @param host The address the workers dial (default: this machine's loopback address, right for
#'   the local provider and for containers on the host network; give this machine's address on
#'   the workers' network otherwise).
#' @param port The port to listen on (default a free one between 11000 and 11999).
#' @param timeout Seconds to wait for every worker to connect.
#' @param rscript The R front end on the workers.
#' @export
makeDialBackCluster <- function(cluster, workers = NULL, host = "127.0.0.1", port = NULL, timeout = 120,
                                rscript = cluster$rscript) {
  checkConnected(cluster)
  if (is.null(workers)) workers <- doDockerParallelInfo(cluster, "workers")
  workers <- as.integer(workers)
  if (is.na(workers) || workers < 1L) stop("workers must be 1 or more", call. = FALSE)
  listener <- NULL
  for (candidate in c(port, sample(11000:11999, 20))) {
    listener <- tryCatch(serverSocket(candidate), error = function(e) NULL)
    if (!is.null(listener)) {
      port <- candidate
      break
    }
  }
  if (is.null(listener)) stop("could not listen on a port for the workers to dial back: give one with port =", call. = FALSE)
  on.exit(close(listener), add = TRUE)
  job <- newJobID("r-dialback")
  command <- c(
    rscript, "--default-packages=datasets,utils,grDevices,graphics,stats,methods", "-e", "parallel:::.workRSOCK()",
    paste0("MASTER=", host), paste0("PORT=", port), "OUT=/dev/null", paste0("SETUPTIMEOUT=", timeout),
    "TIMEOUT=2592000", "XDR=TRUE", "SETUPSTRATEGY=sequential", "RANK={}")
  apiRequest(cluster$api, "POST", "/api/v1/jobs", jsonlite::toJSON(list(
    id = job, command = as.list(command), inputs = as.list(as.character(seq_len(workers))), maxAttempts = 1L),
    auto_unbox = TRUE))
  nodes <- vector("list", workers)
  deadline <- Sys.time() + timeout
  for (rank in seq_len(workers)) {
    remaining <- as.numeric(difftime(deadline, Sys.time(), units = "secs"))
    # Wait for the next worker within the set-up time; the accepted connection itself gets the
    # long timeout of makePSOCKcluster's, since socketAccept's timeout is the connection's.
    connection <- if (remaining > 0 && isTRUE(socketSelect(list(listener), timeout = remaining))) {
      tryCatch(socketAccept(listener, blocking = TRUE, open = "a+b", timeout = 2592000L), error = function(e) NULL)
    }
    if (is.null(connection)) {
      for (node in nodes[seq_len(rank - 1L)]) try(close(node$con), silent = TRUE)
      try(apiRequest(cluster$api, "POST", paste0("/api/v1/jobs/", job, "/cancel")), silent = TRUE)
      stop(sprintf(paste0(
        "only %d of %d dial-back workers connected within %d s: the cluster may have fewer free worker slots ",
        "than workers (add workers with setWorkerNumber()), or the workers cannot reach %s:%d (give host =)"),
        rank - 1L, workers, as.integer(timeout), host, port), call. = FALSE)
    }
    nodes[[rank]] <- structure(list(con = connection, host = host, rank = rank), class = "SOCKnode")
  }
  structure(nodes, class = c("SOCKcluster", "cluster"), job = job)
}
