# The BiocParallel backend: bplapply() and friends as durable jobs.

#' A BiocParallel backend on a DockerParallel cluster.
#'
#' `startCluster()` registers one as the default when BiocParallel is installed. `bplapply()`,
#' `bpmapply()` and `bpvec()` run as durable jobs (`bpiterate()` is not supported): elements whose worker dies run again, failed
#' elements are retried `retries` times, and `BPREDO` reruns only the failed ones.
#' @param cluster A started cluster.
#' @param retries Retries of an element whose R code failed.
#' @param timeout Seconds an element may run (`NULL`: no limit).
#' @param stop.on.error Whether an error stops the call (with the other results in the error).
#' @export
DockerParam <- function(cluster, retries = 0L, timeout = NULL, stop.on.error = TRUE) {
  if (!requireNamespace("BiocParallel", quietly = TRUE)) {
    stop("DockerParam needs the BiocParallel package: install it (Debian: r-bioc-biocparallel)", call. = FALSE)
  }
  prototype <- BiocParallel:::.prototype_update(
    BiocParallel:::.BiocParallelParam_prototype,
    workers = max(1L, as.integer(cluster$expectedWorkerNumber)), stop.on.error = stop.on.error,
    timeout = if (is.null(timeout)) BiocParallel:::WORKER_TIMEOUT else as.integer(timeout))
  param <- do.call(dockerParamClass(), prototype)
  param$cluster <- cluster
  param$retries <- as.integer(retries)
  param
}

bioc <- new.env(parent = emptyenv())

dockerParamClass <- function() {
  if (!is.null(bioc$generator)) return(bioc$generator)
  namespace <- asNamespace("BiocParallel")
  generator <- methods::setRefClass("DockerParam", contains = "BiocParallelParam",
    fields = list(cluster = "ANY", retries = "integer"), where = bioc$where)
  generic <- function(name) methods::getGeneric(name, package = "BiocParallel", where = namespace)
  methods::setMethod(generic("bpisup"), "DockerParam", function(x) !is.null(x$cluster$api), where = bioc$where)
  methods::setMethod(generic("bpstart"), "DockerParam", function(x, ...) invisible(x), where = bioc$where)
  methods::setMethod(generic("bpstop"), "DockerParam", function(x) invisible(x), where = bioc$where)
  methods::setMethod(generic("bpschedule"), "DockerParam", function(x) TRUE, where = bioc$where)
  methods::setMethod(generic("bplapply"), c("ANY", "DockerParam"), dockerBplapply, where = bioc$where)
  methods::setMethod(generic("bpiterate"), c("ANY", "ANY", "DockerParam"), function(ITER, FUN, ..., BPPARAM) {
    stop("bpiterate() is not supported by DockerParam: collect the items and use bplapply()", call. = FALSE)
  }, where = bioc$where)
  bioc$generator <- generator
  generator
}

dockerBplapply <- function(X, FUN, ..., BPREDO = list(), BPPARAM = BiocParallel::bpparam(), BPOPTIONS = BiocParallel::bpoptions()) {
  FUN <- match.fun(FUN)
  if (!length(X)) return(list())
  cluster <- BPPARAM$cluster
  checkConnected(cluster)
  elements <- seq_along(X)
  results <- vector("list", length(X))
  if (length(BPREDO)) {
    if (length(BPREDO) != length(X)) stop("BPREDO must be the result of the same call: its length differs from X's", call. = FALSE)
    results <- BPREDO
    elements <- which(!BiocParallel::bpok(BPREDO))
    if (!length(elements)) return(BPREDO)
  }
  timeout <- BiocParallel::bptimeout(BPPARAM)
  job <- submitJob(cluster, as.list(X)[elements], FUN, ..., retries = BPPARAM$retries,
                   timeout = if (!is.na(timeout) && is.finite(timeout)) timeout else NULL)
  values <- collectElements(cluster, job, rep(1L, length(elements)), progress = BiocParallel::bpprogressbar(BPPARAM))
  try(apiRequest(cluster$api, "DELETE", paste0("/api/v1/jobs/", job)), silent = TRUE)
  failed <- integer(0)
  for (i in seq_along(elements)) {
    value <- values[[i]]
    if (inherits(value, "dockerparallelTaskError")) {
      class(value) <- c("remote_error", "bperror", class(value))
      failed <- c(failed, elements[i])
    }
    results[elements[i]] <- list(value)
  }
  names(results) <- names(X)
  if (length(failed) && BiocParallel::bpstopOnError(BPPARAM)) {
    first <- results[[failed[1]]]
    message <- paste0(
      "BiocParallel errors\n  ", length(failed), " remote errors, element index: ",
      paste(utils::head(failed, 10), collapse = ", "), if (length(failed) > 10) ", ...",
      "\n  first remote error:\n",
      if (is.null(conditionCall(first))) "Error: " else paste0("Error in ", paste(deparse(conditionCall(first), nlines = 1L), collapse = ""), ": "),
      conditionMessage(first))
    stop(structure(class = c("bplist_error", "bperror", "error", "condition"),
                   list(message = message, call = NULL), result = results))
  }
  results
}
