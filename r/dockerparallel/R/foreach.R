# The foreach backend: %dopar% loops as durable jobs.

# The backend foreach calls: every iteration becomes a task (or a chunk of them), the values come
# back in order, and foreach's own accumulator applies .combine and .errorhandling.
doDockerParallel <- function(obj, expr, envir, data) {
  cluster <- data
  if (!inherits(obj, "foreach")) stop("obj must be a foreach object", call. = FALSE)
  it <- iterators::iter(obj)
  accumulator <- foreach::makeAccum(it)
  items <- as.list(it)
  options <- obj$options$dockerparallel %||% list()
  globals <- findGlobals(expr, envir, exclude = c(names(obj$argnames), obj$argnames, obj$noexport), export = obj$export)
  globals$packages <- union(obj$packages, globals$packages)
  if (length(items) == 0L) return(foreach::getResult(it))
  # An interrupted loop (Ctrl-C, an error here, even in the middle of its submits) cancels and
  # forgets its job, unless it is to be kept.
  id <- options$job %||% newJobID()
  collected <- FALSE
  on.exit(if (!collected && !isTRUE(options$keep)) {
    try(cancelJob(cluster, id), silent = TRUE)
    try(apiRequest(cluster$api, "DELETE", paste0("/api/v1/jobs/", id)), silent = TRUE)
  }, add = TRUE)
  job <- submitElements(cluster, expr, items, globals, options, job = id)
  values <- collectElements(cluster, job, progress = isTRUE(options$progress))
  collected <- TRUE
  if (!isTRUE(options$keep)) try(apiRequest(cluster$api, "DELETE", paste0("/api/v1/jobs/", job)), silent = TRUE)
  tryCatch(accumulator(values, seq_along(values)), error = function(e) {
    stop(simpleError(paste("error calling combine function:", conditionMessage(e))))
  })
  errorValue <- foreach::getErrorValue(it)
  errorIndex <- foreach::getErrorIndex(it)
  if (identical(obj$errorHandling, "stop") && !is.null(errorValue)) {
    message <- sprintf("task %d failed - \"%s\"", errorIndex, conditionMessage(errorValue))
    stop(structure(class = c("dockerparallelTaskError", "simpleError", "error", "condition"),
                   list(message = message, call = expr, traceback = errorValue$traceback, task = errorIndex,
                        job = as.character(job), log = errorValue$log)))
  }
  foreach::getResult(it)
}

doDockerParallelInfo <- function(data, item) {
  switch(item,
    workers = {
      status <- tryCatch(jsonlite::fromJSON(paste(runProgram(c("status", "--json", data$clusterArguments), verbose = 0), collapse = "")),
                         error = function(e) NULL)
      status$slots %||% data$expectedWorkerNumber
    },
    name = "doDockerParallel",
    version = as.character(utils::packageVersion("dockerparallel")),
    NULL)
}

#' Register a cluster as the foreach backend.
#'
#' `startCluster()` and `reconnect()` do this. Options go in
#' `foreach(..., .options.dockerparallel = list(chunkSize = 1, retries = 0, timeout = NULL, job = NULL, keep = FALSE, progress = FALSE))`.
#' @param cluster A started cluster.
#' @export
registerDoDockerParallel <- function(cluster) {
  foreach::setDoPar(doDockerParallel, data = cluster, info = doDockerParallelInfo)
  registered$foreach <- cluster
  invisible(cluster)
}

# Which cluster each backend is registered for: stopping another cluster leaves them alone.
registered <- new.env(parent = emptyenv())

registerBackends <- function(cluster) {
  registerDoDockerParallel(cluster)
  if (requireNamespace("BiocParallel", quietly = TRUE)) {
    BiocParallel::register(DockerParam(cluster), default = TRUE)
    registered$bioc <- cluster
  }
  invisible(cluster)
}

deregisterBackends <- function(cluster) {
  if (identical(registered$foreach, cluster) && identical(foreach::getDoParName(), "doDockerParallel")) {
    foreach::registerDoSEQ()
    registered$foreach <- NULL
  }
  if (identical(registered$bioc, cluster) && requireNamespace("BiocParallel", quietly = TRUE)) {
    if (inherits(BiocParallel::bpparam(), "DockerParam")) BiocParallel::register(BiocParallel::SerialParam(), default = TRUE)
    registered$bioc <- NULL
  }
  invisible(cluster)
}
