// OkHttp 3.x client used by scripts/testbed.sh (compiled at run time against Debian's
// libokhttp-java: /usr/share/java/okhttp.jar + okio.jar).
//
//   java PinClient trust    URL [PROXYHOST:PORT]
//   java PinClient pin      URL PIN [PROXYHOST:PORT]   OkHttp CertificatePinner (checked after the handshake)
//   java PinClient tm-throw URL [PROXYHOST:PORT]       custom X509TrustManager that always throws
//   java PinClient fallback URL PIN PROXYHOST:PORT N  pinned client, app-level retry loop: N tries
//                                                     through the proxy, then the same client direct
//
// The default trust store comes from -Djavax.net.ssl.trustStore (the testbed points it at a
// PKCS12 store holding the origin CA, so in "pin" mode only the pin can fail).
// Exit status: 0 = request succeeded, 2 = failed the way the mode intends, 1 = anything else.
// fallback: 0 = every proxy try failed the pin and the direct try succeeded, 1 = anything else.

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Proxy;
import java.security.SecureRandom;
import java.security.cert.CertificateException;
import java.security.cert.X509Certificate;
import java.util.concurrent.TimeUnit;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLHandshakeException;
import javax.net.ssl.SSLPeerUnverifiedException;
import javax.net.ssl.TrustManager;
import javax.net.ssl.X509TrustManager;
import okhttp3.CertificatePinner;
import okhttp3.HttpUrl;
import okhttp3.OkHttpClient;
import okhttp3.Request;
import okhttp3.Response;

public class PinClient {
    static final class ThrowingTrustManager implements X509TrustManager {
        @Override public void checkClientTrusted(X509Certificate[] chain, String authType)
                throws CertificateException {
            throw new CertificateException("client certs not supported");
        }
        @Override public void checkServerTrusted(X509Certificate[] chain, String authType)
                throws CertificateException {
            throw new CertificateException("custom trust logic rejected "
                    + chain[0].getSubjectX500Principal());
        }
        @Override public X509Certificate[] getAcceptedIssuers() { return new X509Certificate[0]; }
    }

    static Proxy proxy(String hostPort) {
        int i = hostPort.lastIndexOf(':');
        return new Proxy(Proxy.Type.HTTP, new InetSocketAddress(hostPort.substring(0, i),
                Integer.parseInt(hostPort.substring(i + 1))));
    }

    /** The AN1725 fallback pattern: one pinned OkHttpClient (shared pool and TLS setup), proxy tries, then direct. */
    static int fallback(HttpUrl url, String pin, String proxyArg, int tries) {
        OkHttpClient base = new OkHttpClient.Builder()
                .connectTimeout(10, TimeUnit.SECONDS)
                .readTimeout(10, TimeUnit.SECONDS)
                .certificatePinner(new CertificatePinner.Builder().add(url.host(), pin).build())
                .build();
        int rc = 0;
        for (int i = 1; i <= tries + 1; i++) {
            boolean direct = i > tries;
            OkHttpClient c = base.newBuilder().proxy(direct ? Proxy.NO_PROXY : proxy(proxyArg)).build();
            String how = "try " + i + (direct ? " direct" : " via proxy " + proxyArg);
            try (Response r = c.newCall(new Request.Builder().url(url).build()).execute()) {
                System.err.println("java/okhttp: " + how + ": " + r.protocol() + " " + r.code() + " "
                        + r.handshake().tlsVersion() + " body=" + r.body().string().trim());
                if (!direct) rc = 1;
            } catch (SSLPeerUnverifiedException e) {
                System.err.println("java/okhttp: " + how + ": SSLPeerUnverifiedException: "
                        + e.getMessage().split("\n")[0]);
                if (direct) rc = 1;
            } catch (IOException e) {
                System.err.println("java/okhttp: " + how + ": " + e);
                rc = 1;
            }
        }
        base.dispatcher().executorService().shutdown();
        base.connectionPool().evictAll();
        return rc;
    }

    public static void main(String[] args) throws Exception {
        String mode = args[0];
        if (mode.equals("fallback")) {
            System.exit(fallback(HttpUrl.get(args[1]), args[2], args[3], Integer.parseInt(args[4])));
        }
        HttpUrl url = HttpUrl.get(args[1]);
        OkHttpClient.Builder b = new OkHttpClient.Builder()
                .connectTimeout(10, TimeUnit.SECONDS)
                .readTimeout(10, TimeUnit.SECONDS);
        String proxyArg = null;
        switch (mode) {
            case "trust":
                proxyArg = args.length > 2 ? args[2] : null;
                break;
            case "pin":
                b.certificatePinner(new CertificatePinner.Builder().add(url.host(), args[2]).build());
                proxyArg = args.length > 3 ? args[3] : null;
                break;
            case "tm-throw": {
                X509TrustManager tm = new ThrowingTrustManager();
                SSLContext ctx = SSLContext.getInstance("TLS");
                ctx.init(null, new TrustManager[] {tm}, new SecureRandom());
                b.sslSocketFactory(ctx.getSocketFactory(), tm);
                proxyArg = args.length > 2 ? args[2] : null;
                break;
            }
            default:
                System.err.println("unknown mode " + mode);
                System.exit(1);
        }
        if (proxyArg != null) b.proxy(proxy(proxyArg));
        OkHttpClient client = b.build();
        int rc;
        try (Response r = client.newCall(new Request.Builder().url(url).build()).execute()) {
            System.err.println("java/okhttp: " + r.protocol() + " " + r.code() + " "
                    + r.handshake().tlsVersion() + " body=" + r.body().string().trim());
            rc = 0;
        } catch (SSLPeerUnverifiedException e) {
            System.err.println("java/okhttp: SSLPeerUnverifiedException: "
                    + e.getMessage().split("\n")[0]);
            rc = mode.equals("pin") ? 2 : 1;
        } catch (SSLHandshakeException e) {
            System.err.println("java/okhttp: SSLHandshakeException: " + e.getMessage());
            rc = mode.equals("tm-throw") || mode.equals("trust") ? 2 : 1;
        } catch (IOException e) {
            System.err.println("java/okhttp: " + e);
            rc = 1;
        }
        client.dispatcher().executorService().shutdown();
        client.connectionPool().evictAll();
        System.exit(rc);
    }
}
