package local.graphdb;

import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.graphdb.GraphDatabaseService;
import org.neo4j.io.ByteUnit;

/**
 * Runs Neo4j 5.26 Community with Bolt on a loopback address and a persistent home directory.
 *
 * Environment: NEO4J_BOLT_HOST (127.0.0.1), NEO4J_BOLT_PORT (7687), NEO4J_PASSWORD (unset = auth
 * off), NEO4J_PAGECACHE_MB (1024), NEO4J_TX_LOG_RETENTION ("1G size").
 *
 * Transaction logs: Neo4j keeps two days of them by default, for incremental backups and cluster
 * members catching up, neither of which a single local instance has. A 1M-release load wrote 4.9 GB
 * of logs next to a 2.1 GB store; the full Discogs dump would keep about 90 GB. Logs are pruned at
 * a checkpoint and those recovery still needs (since the last checkpoint) are kept whatever the
 * policy, so checkpoints come every 5 minutes instead of 15: a load writes about 12 MB/s of logs.
 */
public final class LocalNeo4j {
    private LocalNeo4j() {}

    public static void main(String[] args) throws InterruptedException {
        Path home = Path.of(args.length > 0 ? args[0] : "neo4j-home").toAbsolutePath();
        String host = env("NEO4J_BOLT_HOST", "127.0.0.1");
        int port = Integer.parseInt(env("NEO4J_BOLT_PORT", "7687"));
        long pageCacheMb = Long.parseLong(env("NEO4J_PAGECACHE_MB", "1024"));
        String password = System.getenv("NEO4J_PASSWORD");
        boolean auth = password != null && !password.isEmpty();

        DatabaseManagementService dbms = new DatabaseManagementServiceBuilder(home)
                .setConfig(BoltConnector.enabled, true)
                .setConfig(BoltConnector.listen_address, new SocketAddress(host, port))
                .setConfig(BoltConnector.advertised_address, new SocketAddress(host, port))
                .setConfig(GraphDatabaseSettings.auth_enabled, auth)
                .setConfig(GraphDatabaseSettings.pagecache_memory, ByteUnit.mebiBytes(pageCacheMb))
                .setConfig(GraphDatabaseSettings.transaction_timeout, Duration.ZERO)
                // Clients set their own timeouts (graphinator: NEO4J_TX_TIMEOUT); checked every
                // 200 ms instead of every 2 s, so a transaction stops close to its timeout.
                .setConfig(GraphDatabaseSettings.transaction_monitor_check_interval, Duration.ofMillis(200))
                .setConfig(GraphDatabaseSettings.keep_logical_logs, env("NEO4J_TX_LOG_RETENTION", "1G size"))
                .setConfig(GraphDatabaseSettings.check_point_interval_time, Duration.ofMinutes(5))
                .build();
        Runtime.getRuntime().addShutdownHook(new Thread(dbms::shutdown, "neo4j-shutdown"));

        if (auth) {
            GraphDatabaseService system = dbms.database(GraphDatabaseSettings.SYSTEM_DATABASE_NAME);
            boolean mustChange = system.executeTransactionally(
                    "SHOW USERS YIELD user, passwordChangeRequired "
                            + "WHERE user = 'neo4j' RETURN passwordChangeRequired AS c",
                    Map.of(),
                    r -> r.hasNext() && Boolean.TRUE.equals(r.next().get("c")));
            if (mustChange) {
                system.executeTransactionally(
                        "ALTER USER neo4j SET PASSWORD $pw CHANGE NOT REQUIRED", Map.of("pw", password));
            }
        }
        // Fail fast if the default database did not come up.
        dbms.database(GraphDatabaseSettings.DEFAULT_DATABASE_NAME).executeTransactionally("RETURN 1");
        System.out.println("NEO4J READY bolt://" + host + ":" + port);
        System.out.flush();
        Thread.currentThread().join();
    }

    private static String env(String name, String fallback) {
        String value = System.getenv(name);
        return value == null || value.isEmpty() ? fallback : value;
    }
}
