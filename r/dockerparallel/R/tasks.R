# R tasks through the broker: expressions with their globals, serialised, one job per loop.

`%||%` <- function(a, b) if (is.null(a)) b else a

# The globals an expression needs from `envir`, the packages they come from, and the names of the
# functions defined at the top level (their environment is rebuilt on the worker).
findGlobals <- function(expr, envir, exclude = character(0), export = character(0)) {
  found <- globals::globalsOf(expr, envir = envir, mustExist = FALSE, recursive = TRUE)
  found <- globals::cleanup(found)
  # The values alone: a Globals object also records the environments they came from, which
  # would travel with them.
  values <- stats::setNames(lapply(seq_along(found), function(i) found[[i]]), names(found))
  values <- values[setdiff(names(values), exclude)]
  for (name in export) values[name] <- list(get(name, envir = envir))
  packages <- setdiff(globals::packagesOf(found), c("base", "stats", "utils", "methods", "graphics", "grDevices", "datasets"))
  rebind <- names(values)[vapply(values, function(value) {
    is.function(value) && !is.primitive(value) && identical(environment(value), globalenv())
  }, NA)]
  for (name in names(values)) checkSendable(name, values[[name]])
  list(values = values, packages = packages, rebind = rebind)
}

# The globals of `FUN(element, ...)`: a function of the user's (defined at the top level or in a
# function) is scanned for the globals it uses; a package's function travels as a reference to
# its package.
functionGlobals <- function(FUN, arguments) {
  env <- environment(FUN)
  user <- !is.primitive(FUN) && !is.null(env) && identical(topenv(env), globalenv())
  globals <- if (user) {
    findGlobals(body(FUN), env, exclude = names(formals(FUN)))
  } else {
    list(values = list(), packages = character(0), rebind = character(0))
  }
  if (!user && !is.primitive(FUN) && !is.null(env) && isNamespace(env)) {
    globals$packages <- union(globals$packages, setdiff(getNamespaceName(env), "base"))
  }
  globals$values$FUN <- FUN
  if (user && identical(env, globalenv())) globals$rebind <- c(globals$rebind, "FUN")
  # Each further argument is a global of its own; a function among them (bpmapply passes the
  # user's function this way) brings its globals too.
  for (i in seq_along(arguments)) {
    name <- paste0(".ARG", i)
    value <- arguments[[i]]
    label <- if (nzchar(names(arguments)[i] %||% "")) names(arguments)[i] else paste("argument", i)
    checkSendable(label, value)
    globals$values[name] <- list(value)
    if (is.function(value) && !is.primitive(value) && identical(topenv(environment(value)), globalenv())) {
      inner <- findGlobals(body(value), environment(value), exclude = names(formals(value)))
      clash <- intersect(names(inner$values), c("FUN", "X", grep("^\\.ARG[0-9]+$", names(globals$values), value = TRUE)))
      if (length(clash)) {
        stop("the function passed as ", label, " uses a global named '", clash[1], "', a name this package ",
             "uses for the call itself: rename that global", call. = FALSE)
      }
      for (global in setdiff(names(inner$values), names(globals$values))) globals$values[global] <- list(inner$values[[global]])
      globals$packages <- union(globals$packages, inner$packages)
      globals$rebind <- union(globals$rebind, inner$rebind)
      if (identical(environment(value), globalenv())) globals$rebind <- c(globals$rebind, name)
    }
  }
  globals
}

# Objects that lose their meaning in another process cannot be sent.
checkSendable <- function(name, value) {
  tryCatch(
    serialize(value, NULL, xdr = FALSE, refhook = function(x) {
      if (typeof(x) == "externalptr") stop("external pointer")
      NULL
    }),
    error = function(e) {
      stop("the global '", name, "' holds an external pointer (a connection, a database handle or a C/C++ ",
           "object) and cannot be sent to the workers: create it inside the loop body instead", call. = FALSE)
    })
  invisible()
}

# One independent random-number stream per element (L'Ecuyer-CMRG), derived from this session's
# state, so that set.seed() before a loop makes its results reproducible. The session's own
# generator kind is left as it was.
elementSeeds <- function(count) {
  if (!exists(".Random.seed", envir = globalenv(), inherits = FALSE)) set.seed(NULL)
  start <- sample.int(.Machine$integer.max, 1L)
  saved <- get(".Random.seed", envir = globalenv(), inherits = FALSE)
  kinds <- RNGkind()
  RNGkind("L'Ecuyer-CMRG")
  set.seed(start)
  stream <- get(".Random.seed", envir = globalenv(), inherits = FALSE)
  do.call(RNGkind, as.list(kinds))
  assign(".Random.seed", saved, envir = globalenv())
  seeds <- vector("list", count)
  for (i in seq_len(count)) {
    seeds[[i]] <- stream
    stream <- parallel::nextRNGStream(stream)
  }
  seeds
}

newJobID <- function(prefix = "r") {
  paste0(prefix, "-", format(Sys.time(), "%Y%m%d%H%M%S"), "-", paste(sample(c(letters, 0:9), 6, TRUE), collapse = ""))
}

checkConnected <- function(cluster) {
  if (is.null(cluster$api)) {
    stop("the cluster '", cluster$jobQueueName, "' is not connected: call startCluster() or reconnect()", call. = FALSE)
  }
}

# The largest serialised task: its base64 must fit in one HTTP request of 32 MiB.
inputLimit <- 20e6

# Elements per task when the loop does not say: one each when each element's failures are
# retried or the job is kept to be collected element by element; else about eight tasks per
# worker slot, so that tiny elements do not pay a task's cost each (and the globals travel
# once per task, not per element).
defaultChunkSize <- function(cluster, count, options) {
  if (!is.null(options$job) || isTRUE(options$keep) || (options$retries %||% 0L) > 0L || !is.null(options$timeout)) return(1L)
  # The slots of the workers connected now; else those asked for; none known, one element each.
  slots <- tryCatch(as.integer(apiRequest(cluster$api, "GET", "/api/v1/status")$workerSlots), error = function(e) 0L)
  if (!length(slots) || is.na(slots) || slots < 1L) {
    slots <- as.integer(cluster$expectedWorkerNumber) * as.integer(cluster$slotsPerWorker %||% 1L)
  }
  if (!length(slots) || is.na(slots) || slots < 1L) return(1L)
  max(1L, as.integer(ceiling(count / (slots * 8L))))
}

# Submits the elements as tasks; returns the job's id.
submitElements <- function(cluster, expr, items, globals, options = list(), job = options$job %||% newJobID()) {
  checkConnected(cluster)
  chunkSize <- as.integer(options$chunkSize %||% defaultChunkSize(cluster, length(items), options))
  if (is.na(chunkSize) || chunkSize < 1L) stop("chunkSize must be 1 or more", call. = FALSE)
  seeds <- elementSeeds(length(items))
  chunks <- split(seq_along(items), ceiling(seq_along(items) / chunkSize))
  inputs <- lapply(chunks, function(elements) {
    serialize(list(expr = expr, items = items[elements], globals = globals$values, rebind = globals$rebind,
                   packages = globals$packages, seeds = seeds[elements]), NULL, xdr = FALSE)
  })
  sizes <- lengths(inputs)
  if (max(sizes) > inputLimit) {
    biggest <- names(sort(vapply(globals$values, function(v) length(serialize(v, NULL)), 0), decreasing = TRUE))[1:min(3, length(globals$values))]
    stop(sprintf(paste0(
      "a task's data is %.1f MB serialised, over the limit of %d MB: its globals travel with every task ",
      "(the biggest: %s); pass big data as a file the workers can read, or in smaller pieces"),
      max(sizes) / 1e6, inputLimit / 1e6, paste(biggest[!is.na(biggest)], collapse = ", ")), call. = FALSE)
  }
  submitBatches(cluster$api, job, workerProgram(cluster$rscript), unname(inputs), list(
    maxAttempts = as.integer(options$maxAttempts %||% 3L), retries = as.integer(options$retries %||% 0L),
    timeout = options$timeout))
  attr(job, "chunks") <- lengths(chunks)
  job
}

# The condition a failed element becomes: its R error, the call, the worker's traceback and log.
taskError <- function(record, element, job) {
  detail <- record$error %||% "the task failed"
  parts <- regmatches(detail, regexec("^(.*?)\n\ncall: (.*?)\ntraceback:\n?(.*)$", detail))[[1]]
  message <- if (length(parts)) parts[2] else detail
  call <- if (length(parts) && nzchar(parts[3])) tryCatch(str2lang(parts[3]), error = function(e) NULL) else NULL
  traceback <- if (length(parts) && nzchar(parts[4])) strsplit(parts[4], "\n", fixed = TRUE)[[1]] else character(0)
  if (identical(record$status, "cancelled")) message <- "the task was cancelled"
  structure(
    class = c("dockerparallelTaskError", "simpleError", "error", "condition"),
    list(message = message, call = call, traceback = traceback, task = element, job = job,
         attempts = record$attempts, log = record$errorOutput %||% ""))
}

# Each element's value, or its error condition, in order.
collectElements <- function(cluster, job, chunks = attr(job, "chunks"), progress = FALSE) {
  checkConnected(cluster)
  total <- length(chunks)
  bar <- NULL
  report <- NULL
  if (isTRUE(progress) && interactive()) {
    bar <- utils::txtProgressBar(min = 0, max = max(1, total), style = 3)
    on.exit(close(bar), add = TRUE)
    report <- function(done, total) utils::setTxtProgressBar(bar, done)
  }
  records <- fetchResults(cluster$api, job, total, report)
  values <- vector("list", sum(chunks))
  first <- 0L
  for (i in seq_along(records)) {
    record <- records[[i]]
    elements <- first + seq_len(chunks[i])
    if (identical(record$status, "succeeded")) {
      chunk <- unserialize(jsonlite::base64_dec(record$output))
      for (j in seq_along(chunk)) {
        value <- chunk[[j]]
        if (inherits(value, "dockerparallelItemError")) value <- taskError(list(error = value$message), elements[j], job)
        values[elements[j]] <- list(value)
      }
    } else {
      for (element in elements) values[element] <- list(taskError(record, element, job))
    }
    first <- first + chunks[i]
  }
  values
}

#' Run a function over elements as a durable job, or collect a job by id.
#'
#' `submitJob()` sends one task per element and returns the job's id at once; the tasks run
#' whether or not this R session stays. `collectJob()` waits for the job and returns its values
#' (failed elements as `dockerparallelTaskError` conditions), from this session or another one
#' after `reconnect()`.
#' @param cluster A started or reconnected cluster.
#' @param X The elements.
#' @param FUN The function, called as `FUN(element, ...)`.
#' @param ... More arguments for `FUN`.
#' @param job The job's id (default a new one).
#' @param retries Retries of an element whose R code failed.
#' @param timeout Seconds an element may run.
#' @export
submitJob <- function(cluster, X, FUN, ..., job = NULL, retries = 0L, timeout = NULL) {
  FUN <- match.fun(FUN)
  arguments <- list(...)
  # FUN(X, name = .ARG1, ...): errors show the call as BiocParallel's do.
  expr <- as.call(c(list(as.name("FUN"), as.name("X")), lapply(seq_along(arguments), function(i) as.name(paste0(".ARG", i)))))
  names(expr) <- c("", "", names(arguments) %||% rep("", length(arguments)))
  items <- lapply(as.list(X), function(x) list(X = x))
  id <- submitElements(cluster, expr, items, functionGlobals(FUN, arguments), list(job = job, retries = retries, timeout = timeout, chunkSize = 1L))
  cluster$jobs <- union(cluster$jobs, as.character(id))
  as.character(id)
}

#' @rdname submitJob
#' @param simplify Return a list (default) or let `simplify2array` simplify it.
#' @export
collectJob <- function(cluster, job, simplify = FALSE) {
  checkConnected(cluster)
  status <- tryCatch(
    apiRequest(cluster$api, "GET", paste0("/api/v1/jobs/", utils::URLencode(job, reserved = TRUE))),
    error = function(e) stop("there is no job '", job, "' on cluster '", cluster$jobQueueName, "'", call. = FALSE))
  total <- status$total
  values <- collectElements(cluster, job, rep(1L, total))
  if (simplify) simplify2array(values) else values
}

#' Cancel a job, or list a cluster's jobs.
#'
#' `cancelJob()` cancels the tasks of a job that have not finished (running ones are stopped);
#' its finished results stay. `listJobs()` gives every job the server keeps, with its counts.
#' @param cluster A started or reconnected cluster.
#' @param job The job's id.
#' @export
cancelJob <- function(cluster, job) {
  checkConnected(cluster)
  status <- apiRequest(cluster$api, "POST", paste0("/api/v1/jobs/", utils::URLencode(job, reserved = TRUE), "/cancel"))
  invisible(status)
}

#' @rdname cancelJob
#' @export
listJobs <- function(cluster) {
  checkConnected(cluster)
  jobs <- apiRequest(cluster$api, "GET", "/api/v1/jobs")
  if (!length(jobs)) {
    return(data.frame(job = character(0), total = integer(0), queued = integer(0), running = integer(0),
                      succeeded = integer(0), failed = integer(0), cancelled = integer(0)))
  }
  data.frame(
    job = vapply(jobs, function(j) j$jobID, ""),
    total = vapply(jobs, function(j) as.integer(j$total), 0L),
    queued = vapply(jobs, function(j) as.integer(j$queued), 0L),
    running = vapply(jobs, function(j) as.integer(j$running), 0L),
    succeeded = vapply(jobs, function(j) as.integer(j$succeeded), 0L),
    failed = vapply(jobs, function(j) as.integer(j$failed), 0L),
    cancelled = vapply(jobs, function(j) as.integer(j$cancelled), 0L))
}
