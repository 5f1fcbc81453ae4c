# The cluster object, with the original DockerParallel's interface.

presets <- new.env(parent = emptyenv())
presets$provider <- "local"
presets$providerArguments <- character(0)

#' Choose the default provider of makeDockerCluster().
#'
#' As the original's `clusterPreset()`: later `makeDockerCluster()` calls without a `provider`
#' use this one.
#' @param provider `"local"` (processes on this machine), `"docker"`, `"swarm"`, `"kubernetes"` or `"ecs"`.
#' @param ... More `dockerparallel up` options for that provider, as `name = value`
#'   (for example `image = "dockerparallel-r:latest"`, `dockerHost = "unix:///run/docker.sock"`).
#' @export
clusterPreset <- function(provider = c("local", "docker", "swarm", "kubernetes", "ecs"), ...) {
  presets$provider <- match.arg(provider)
  presets$providerArguments <- optionArguments(list(...))
  invisible(presets$provider)
}

# list(dockerHost = "x", spot = 0.5) -> c("--docker-host", "x", "--spot", "0.5")
optionArguments <- function(options) {
  arguments <- character(0)
  for (name in names(options)) {
    flag <- paste0("--", gsub("([a-z])([A-Z])", "\\1-\\L\\2", name, perl = TRUE))
    for (value in options[[name]]) {
      if (isTRUE(value)) arguments <- c(arguments, flag)
      else if (!identical(value, FALSE)) arguments <- c(arguments, flag, as.character(value))
    }
  }
  arguments
}

#' Make a DockerParallel cluster.
#'
#' The cluster is an object with the original DockerParallel's methods: `startCluster()`,
#' `stopCluster()`, `setWorkerNumber(n)`, `getWorkerNumbers()`, `clusterExists()`,
#' `reconnect()`, `update()`, and the settings `stopClusterOnExit` and `verbose`. Starting it
#' registers a foreach backend (`%dopar%`) and, when BiocParallel is installed, a BiocParallel
#' backend. The cluster's life is that of the `dockerparallel` program's named clusters: another
#' R session, or the shell, can use it by its `jobQueueName`.
#'
#' @param provider Where the workers run: `"local"` (processes on this machine, the default),
#'   `"docker"`, `"swarm"`, `"kubernetes"` or `"ecs"`; default the one `clusterPreset()` chose.
#' @param workerNumber Workers to start.
#' @param jobQueueName The cluster's name, which identifies it.
#' @param serverPort The server's port (default the program's, 8888; 0 picks a free one, for
#'   several local clusters at once).
#' @param workerCpu,workerMemory CPU units (1024 a core) and MB per worker container.
#' @param slotsPerWorker R processes per worker (container).
#' @param image The worker image (container providers); it needs R (`Rscript`).
#' @param RPackages,sysPackages R and Debian packages each worker container installs at start-up.
#' @param providerArguments More `dockerparallel up` options, as `name = value` in a list.
#' @param rscript The R front end on the workers.
#' @param stopClusterOnExit Stop the cluster when this object is garbage-collected or R exits.
#' @param verbose 0 silent, 1 progress, 2 detail.
#' @return A `DockerCluster` object.
#' @export
makeDockerCluster <- function(provider = NULL, workerNumber = 1L, jobQueueName = "DockerParallelQueue",
                              serverPort = NULL, workerCpu = NULL, workerMemory = NULL, slotsPerWorker = 1L, image = NULL,
                              RPackages = character(0), sysPackages = character(0),
                              providerArguments = list(), rscript = "Rscript",
                              stopClusterOnExit = TRUE, verbose = 1) {
  if (is.null(provider)) provider <- presets$provider
  provider <- match.arg(provider, c("local", "docker", "swarm", "kubernetes", "ecs"))
  if (!is.numeric(workerNumber) || length(workerNumber) != 1 || workerNumber < 0) {
    stop("workerNumber must be a number of 0 or more, not ", deparse(workerNumber), call. = FALSE)
  }
  if (!grepl("^[A-Za-z0-9][A-Za-z0-9_.-]*$", jobQueueName)) {
    stop("jobQueueName '", jobQueueName, "' must be letters, digits, '.', '_' or '-', starting with a letter or digit", call. = FALSE)
  }
  if (provider == "local" && (length(RPackages) || length(sysPackages))) {
    stop("RPackages and sysPackages are installed in worker containers: the local provider's workers use this machine's R", call. = FALSE)
  }
  cluster <- new.env(parent = emptyenv())
  class(cluster) <- "DockerCluster"
  cluster$provider <- provider
  cluster$jobQueueName <- jobQueueName
  cluster$expectedWorkerNumber <- as.integer(workerNumber)
  cluster$stopClusterOnExit <- stopClusterOnExit
  cluster$verbose <- verbose
  cluster$rscript <- rscript
  cluster$slotsPerWorker <- as.integer(slotsPerWorker)
  cluster$api <- NULL
  cluster$jobs <- character(0)
  upArguments <- c(
    "--provider", provider, if (provider == presets$provider) presets$providerArguments,
    if (!is.null(image)) c("--image", image), if (!is.null(serverPort)) c("--port", as.integer(serverPort)),
    if (!is.null(workerCpu)) c("--cpu", workerCpu), if (!is.null(workerMemory)) c("--memory", workerMemory),
    c(rbind(rep("--r-package", length(RPackages)), RPackages)),
    c(rbind(rep("--system-package", length(sysPackages)), sysPackages)),
    optionArguments(providerArguments))
  cluster$upArguments <- c("--name", jobQueueName, upArguments, "--slots-per-container", as.integer(slotsPerWorker))
  cluster$clusterArguments <- namedClusterArguments(cluster$upArguments)

  say <- function(...) if (cluster$verbose >= 1) message(...)
  status <- function() {
    text <- runProgram(c("status", "--json", cluster$clusterArguments), verbose = 0)
    jsonlite::fromJSON(paste(text, collapse = "\n"), simplifyVector = FALSE)
  }
  connect <- function() {
    lines <- runProgram(c("api", cluster$clusterArguments), verbose = 0)
    value <- function(name) sub(paste0("^export ", name, "="), "", grep(paste0("^export ", name, "="), lines, value = TRUE))
    api <- list(url = value("DOCKERPARALLEL_API"), token = value("DOCKERPARALLEL_TOKEN"), ca = NULL)
    if (startsWith(api$url, "https")) {
      ca <- runProgram(c("api", "--ca", cluster$clusterArguments), verbose = 0)
      caFile <- tempfile("dockerparallel-ca-", fileext = ".pem")
      writeLines(ca, caFile)
      api$ca <- caFile
    }
    cluster$api <- api
    registerBackends(cluster)
    invisible(cluster)
  }

  cluster$startCluster <- function(...) {
    say("Starting cluster '", jobQueueName, "' (", provider, ", ", cluster$expectedWorkerNumber, " worker(s))")
    runProgram(c("up", cluster$upArguments, "--workers", cluster$expectedWorkerNumber), verbose = cluster$verbose)
    cluster$started <- TRUE
    say("Registering the foreach", if (requireNamespace("BiocParallel", quietly = TRUE)) " and BiocParallel", " backend")
    connect()
  }
  cluster$stopCluster <- function(ignoreError = FALSE) {
    say("Stopping cluster '", jobQueueName, "'")
    deregisterBackends(cluster)
    cluster$api <- NULL
    cluster$started <- FALSE
    tryCatch(runProgram(c("down", cluster$clusterArguments), verbose = cluster$verbose),
             error = function(e) if (!ignoreError) stop(e))
    invisible(cluster)
  }
  cluster$setWorkerNumber <- function(workerNumber) {
    if (!is.numeric(workerNumber) || length(workerNumber) != 1 || workerNumber < 0) {
      stop("the worker number must be a number of 0 or more, not ", deparse(workerNumber), call. = FALSE)
    }
    cluster$expectedWorkerNumber <- as.integer(workerNumber)
    if (isTRUE(status()$running)) {
      say("Setting worker number to ", workerNumber)
      runProgram(c("scale", workerNumber, cluster$clusterArguments), verbose = 0)
    }
    invisible(cluster)
  }
  cluster$getWorkerNumbers <- function() {
    workers <- status()$workers
    if (is.null(workers)) return(list(initializing = 0L, running = 0L, expected = cluster$expectedWorkerNumber))
    list(initializing = workers$initializing, running = workers$running, expected = workers$expected)
  }
  cluster$clusterExists <- function() isTRUE(status()$running)
  cluster$reconnect <- function() {
    if (!cluster$clusterExists()) {
      stop("no cluster named '", jobQueueName, "' is running: start it with startCluster()", call. = FALSE)
    }
    cluster$expectedWorkerNumber <- cluster$getWorkerNumbers()$expected
    # A session that only reconnects leaves the cluster running when it ends, as the original's.
    if (!isTRUE(cluster$started)) cluster$stopClusterOnExit <- FALSE
    cluster$started <- TRUE
    connect()
  }
  cluster$update <- function() {
    # `up` on a cluster whose server died restarts it with its store; on a running one it does
    # nothing. Then the worker number is applied again, replacing workers that died.
    if (!isTRUE(status()$running)) runProgram(c("up", cluster$upArguments), verbose = cluster$verbose)
    runProgram(c("scale", cluster$expectedWorkerNumber, cluster$clusterArguments), verbose = 0)
    if (is.null(cluster$api)) connect()
    invisible(cluster)
  }
  cluster$started <- FALSE
  reg.finalizer(cluster, function(cluster) {
    if (isTRUE(cluster$stopClusterOnExit) && isTRUE(cluster$started)) {
      try(cluster$stopCluster(ignoreError = TRUE), silent = TRUE)
    }
  }, onexit = TRUE)
  cluster
}

# The options of `up` that every other command needs to find the same cluster.
namedClusterArguments <- function(upArguments) {
  keep <- c("--name", "--provider", "--docker-host", "--kubeconfig", "--kube-context", "--namespace",
            "--region", "--aws-profile", "--ecs-cluster", "--state-dir")
  arguments <- character(0)
  i <- 1L
  while (i <= length(upArguments)) {
    if (upArguments[i] %in% keep && i < length(upArguments)) {
      arguments <- c(arguments, upArguments[i], upArguments[i + 1L])
      i <- i + 2L
    } else {
      i <- i + 1L
    }
  }
  arguments
}

#' @export
print.DockerCluster <- function(x, ...) {
  connected <- !is.null(x$api)
  cat("DockerParallel cluster '", x$jobQueueName, "' (", x$provider, ")\n", sep = "")
  cat("Server status:      ", if (connected) paste("Connected at", x$api$url) else "Not connected", "\n", sep = "")
  if (connected) {
    numbers <- x$getWorkerNumbers()
    cat("Worker Number:      ", numbers$expected, " / ", numbers$running, " / ", numbers$initializing,
        " (expected/running/initializing)\n", sep = "")
  } else {
    cat("Worker Number:      ", x$expectedWorkerNumber, " / 0 / 0 (expected/running/initializing)\n", sep = "")
  }
  invisible(x)
}
